//! One call of an action: online through its body, else answered locally and queued.

use super::*;

/// A call's id and stamp, the clock reading it started at, and whether it goes online first.
struct Call {
    id: ActionId,
    timestamp: Timestamp,
    started_at: Timestamp,
    online: bool,
}

impl SyncService {
    /// Runs one call of action `A`: online through its server body, else through its local
    /// handler with the call queued. `#[offline_action]` functions call this.
    pub async fn execute_action<A: Action>(
        &self,
        params: A::Params,
    ) -> Result<A::Output, A::Error> {
        self.clone().run::<A>(params, None).await
    }

    /// Runs one call of action `A` as [`execute_action`](Self::execute_action) does, queueing
    /// it (if it is queued) in the ordering scope `scope` instead of the one `A` declares.
    ///
    /// For a scope known only at run time. Queued calls of one scope replay one at a time in
    /// the order they were made; scopes replay independently of each other, and `""` is the
    /// global scope.
    ///
    /// ```
    /// # use sync_runtime::{offline_action, SyncError, SyncService};
    /// # #[offline_action]
    /// # async fn rename(item: String, name: String) -> Result<(), SyncError> { Ok(()) }
    /// # async fn example(service: SyncService) -> Result<(), SyncError> {
    /// let params = RenameParams { item: "item-7".into(), name: "Lamp".into() };
    /// service
    ///     .execute_action_in_scope::<RenameAction>(params, "item:item-7")
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn execute_action_in_scope<A: Action>(
        &self,
        params: A::Params,
        scope: impl Into<String>,
    ) -> Result<A::Output, A::Error> {
        self.clone().run::<A>(params, Some(scope.into())).await
    }

    /// Runs one call of action `A`, in `scope` or else the one `A` declares: what the two
    /// above and the generated functions (through `__private::Checked::execute`) await.
    ///
    /// It owns the service, so that generated code awaits this future directly rather than
    /// a wrapper that keeps the service alive, and it holds only what depends on `A` (calling
    /// the body or the local handler, and serializing `A`'s types); the rest is in
    /// non-generic helpers, compiled once in this crate instead of once per action in the
    /// user's crate (BENCHMARKS.md, row 5).
    pub(crate) async fn run<A: Action>(
        self,
        params: A::Params,
        scope: Option<String>,
    ) -> Result<A::Output, A::Error> {
        let scope = match scope {
            Some(scope) => scope,
            None => A::scope(&params),
        };
        let encode = |params: &A::Params| {
            canonical_json(params)
                .map_err(|e| SyncError::serde(format!("encode the parameters of `{}`", A::NAME), e))
        };
        // A query's parameters are the key of its cached answer, so they are encoded before
        // the body runs; a mutation's only if it is queued.
        let mut params_json = match A::KIND {
            ActionKind::Query => Some(encode(&params)?),
            ActionKind::Mutation => None,
        };
        let call = self.begin_call().await?;
        let (id, timestamp) = (call.id, call.timestamp);
        trace::call_routed(A::NAME, id, call.online);
        if call.online {
            let context = ActionContext::started_at(
                self.clone(),
                id,
                A::NAME,
                timestamp,
                Phase::Online,
                call.started_at,
            );
            let outcome = context.clone().scope(A::server(params.clone())).await;
            if let Some(answer) = self
                .online_outcome(outcome, &context, params_json.as_deref())
                .await
            {
                return answer;
            }
        }
        let params_json = match params_json.take() {
            Some(json) => json,
            None => encode(&params)?,
        };
        let context = ActionContext::new(self.clone(), id, A::NAME, timestamp, Phase::Offline);
        let result = context.clone().scope(A::local(params)).await;
        // A local handler that fails rejects the call, as the server would; the generated
        // mutation stub fails with `Queued` on purpose, and a query always queues a refresh.
        if result.is_ok() || context.is_marked_queued() || A::KIND == ActionKind::Query {
            let call = NewQueued {
                id,
                name: A::NAME.to_owned(),
                version: A::VERSION,
                kind: A::KIND,
                params: params_json,
                timestamp,
                queued_at: self.inner.clock.now(),
                scope,
            };
            // Boxed: an offline call's bookkeeping need not make every call's future larger.
            crate::boxed(self.queue_call(&context, call, result.is_ok())).await?;
        }
        result
    }

    /// Settles an online attempt's outcome: `Some` answer to return (stored, if it succeeded),
    /// or `None` to answer locally and queue the call (a transient failure). `answer_key` is
    /// a query's parameters as JSON, under which its answer is cached (`None` for a mutation).
    ///
    /// Generic over the success and error types only, not the action: actions that share them
    /// (an app's error type, `()`) share this code.
    async fn online_outcome<T, E>(
        &self,
        outcome: Result<T, E>,
        context: &ActionContext,
        answer_key: Option<&str>,
    ) -> Option<Result<T, E>>
    where
        T: serde::Serialize,
        E: ClassifyError + core::fmt::Display,
    {
        self.save_clock_offset().await;
        match outcome {
            Ok(output) => {
                let answer = answer_key.map(|key| (key, serde_json::to_string(&output)));
                self.store_answer(context, answer).await;
                Some(Ok(output))
            }
            Err(error) if error.is_transient() => {
                trace::online_failed(context.name(), context.id(), &error, true);
                let retry_after = error.retry_after().or(context.noted_retry_after());
                self.mark_unreachable(error.to_string(), retry_after);
                None
            }
            Err(error) => {
                trace::online_failed(context.name(), context.id(), &error, false);
                Some(Err(error))
            }
        }
    }

    /// Checks the registry, loads the counts and the clock offset (until all three are done
    /// once), mints the call's id, and says whether the call goes to the server first.
    async fn begin_call(&self) -> Result<Call, SyncError> {
        if !self.inner.ready.load(Ordering::Acquire) {
            // Boxed: the first call's work would otherwise make every call's future larger
            // (each await's state is part of the caller's), and moving it costs on every call.
            crate::boxed(async {
                Registry::global()?;
                self.ensure_counts().await?;
                if self.load_clock_offset().await {
                    self.inner.ready.store(true, Ordering::Release);
                }
                Ok::<_, SyncError>(())
            })
            .await?;
        }
        // One clock reading serves the id, the attempt's start and the backoff check.
        let started_at = self.inner.clock.now();
        let (id, timestamp) = self.new_id_at(started_at);
        Ok(Call {
            id,
            timestamp,
            started_at,
            online: self.goes_online(started_at).await,
        })
    }

    /// Whether the call goes to the server first.
    async fn goes_online(&self, now: Timestamp) -> bool {
        // While calls wait in the queue the server does not reflect them yet: a mutation sent
        // now would overtake them, and a query's answer would be stamped newer than their
        // optimistic writes and hide them. Both take the local path until the queue drains.
        let backlog = self.inner.hub.pending() > 0;
        if !backlog {
            return self.is_reachable_at(now);
        }
        if self.inner.executor.is_none() && self.is_reachable() {
            // Nothing replays in the background: drain the queue first.
            // Boxed for the same reason as the first call's work above.
            let _ = crate::boxed(self.replay()).await;
        }
        let backlog = self.inner.hub.pending() > 0;
        self.is_reachable() && !backlog
    }

    /// Stores what a successful online call wrote, and a query's answer (`answer`: the
    /// parameters' JSON, the key, and the answer's, if the action is a query). The server has
    /// already applied the call, so a failure here is reported in the status, not returned.
    async fn store_answer(
        &self,
        context: &ActionContext,
        answer: Option<(&str, Result<String, serde_json::Error>)>,
    ) {
        self.mark_reachable();
        if let Some(apply) = self.apply_answer(context, answer) {
            apply.await;
        }
    }

    /// The store's work for [`store_answer`](Self::store_answer), if there is any: boxed, so
    /// that its batch is not part of every call's future.
    fn apply_answer(
        &self,
        context: &ActionContext,
        answer: Option<(&str, Result<String, serde_json::Error>)>,
    ) -> Option<BoxFuture<'_, ()>> {
        let mut batch = Batch::new();
        batch.writes = context.take_writes();
        match answer {
            Some((params_json, Ok(json))) => batch.writes.push(cache_write(
                context.name(),
                params_json,
                json,
                context.stamp(),
            )),
            Some((_, Err(e))) => self.note_error(format!(
                "could not cache the answer of `{}`: {e}",
                context.name()
            )),
            None => {}
        }
        if batch.is_empty() {
            return None;
        }
        Some(crate::boxed(async move {
            if let Err(e) = self.inner.store.apply(batch).await {
                trace::store_error("store an online answer", &e);
                self.note_error(e.to_string());
            }
        }))
    }

    /// Queues a call answered offline, with its local handler's writes if `keep_writes`.
    async fn queue_call(
        &self,
        context: &ActionContext,
        call: NewQueued,
        keep_writes: bool,
    ) -> Result<(), SyncError> {
        let (id, name) = (call.id, call.name.clone());
        let mut batch = Batch::new();
        if keep_writes {
            batch.writes = context.take_writes();
        }
        batch.enqueue = Some(call);
        let applied: Applied = self.inner.store.apply(batch).await?;
        if applied.queued == Some(id) {
            trace::queued(&name, id, applied.replaced);
            if applied.replaced.is_none() {
                self.inner.hub.update(|s| s.pending += 1);
            }
            self.inner.hub.emit(SyncEvent::Queued { id, name });
        }
        self.kick_replay();
        Ok(())
    }

    /// The answer a query got online for these parameters, if one was cached.
    pub(crate) async fn cached<A: Action>(
        &self,
        params: &A::Params,
    ) -> Result<A::Output, A::Error> {
        let key = canonical_json(params)
            .map_err(|e| SyncError::serde(format!("encode the parameters of `{}`", A::NAME), e))?;
        let record = self
            .inner
            .store
            .get(&cache_collection(A::NAME), &key)
            .await
            .map_err(SyncError::from)?;
        match record.and_then(|r| r.value) {
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                SyncError::serde(format!("decode the cached answer of `{}`", A::NAME), e).into()
            }),
            None => Err(SyncError::NotCached { action: A::NAME }.into()),
        }
    }
}
