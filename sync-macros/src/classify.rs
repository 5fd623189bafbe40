//! `#[derive(ClassifyError)]`: implements `sync_runtime::ClassifyError` from `#[classify(...)]`
//! attributes.
//!
//! The same pipeline as the attribute macro: `attr` reads the attributes, `ast` lowers the type
//! into a model, `valid` checks that model and `expand` writes the impl.

mod ast;
mod attr;
mod expand;
mod valid;

pub(crate) use expand::derive;

#[cfg(test)]
pub(crate) use expand::expand;
