//! A streaming argument cannot be queued: the server function says so at compile time.

use server_fn::codec::{StreamingText, TextStream};
use server_fn::error::ServerFnError;
use server_fn_macro_default::server;
use sync_runtime::offline_action;
use sync_runtime::server_fn::{OfflineClient, ReqwestClient};

#[server(client = OfflineClient<ReqwestClient>, input = StreamingText)]
#[offline_action]
pub async fn upload(lines: TextStream) -> Result<u32, ServerFnError> {
    unreachable!()
}

fn main() {}
