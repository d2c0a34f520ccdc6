//! One YAML file to typed values, with every problem a diagnostic at `file:line:column`: the
//! parser (serde-saphyr, one parse, bounded against hostile files), the location index (built
//! only when a diagnostic must be placed), and [`check::FileCheck`], through which a kind
//! checks its values after deserialising. Knows no kind and no folder layout (that is the
//! loader's, [`crate::desired`]).

pub mod check;
pub mod diag;
pub mod locate;
pub mod parse;

pub use check::FileCheck;
pub use diag::{Diagnostic, LoadErrors, Severity};
