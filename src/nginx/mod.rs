//! Lossless NGINX config parser and include loader.
//!
//! [`ParsedFile::parse`] never fails: it follows nginx's tokenizer, records
//! errors where nginx would stop, and keeps every byte in the tree (so
//! [`ParsedFile::print`] gives back the input exactly, which lets later steps
//! edit configs by byte spans). DirectAdmin template tokens (`|*if …|`,
//! `|CUSTOM|`, `|$ … DONE|`) at a statement start are kept as trivia.
//! [`Loader`] inlines `include`s into one flat list of [`Item`]s.

mod ast;
mod loader;
mod parser;
mod source;

pub use ast::{Block, Directive, Node, ParseError, ParsedFile, Span, Word};
pub use loader::{Expanded, Item, Loader, Problem, ProblemKind, Source};
pub use parser::MAX_DEPTH;
pub use source::{MemSource, RootSource};

impl ParsedFile {
    /// Parses any bytes; never panics. Errors are in [`ParsedFile::errors`].
    pub fn parse(path: impl Into<String>, src: Vec<u8>) -> ParsedFile {
        parser::parse(path.into(), src)
    }
}

#[cfg(test)]
mod parser_tests;
