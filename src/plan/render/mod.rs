//! Renderers: text for a terminal, Markdown for a pull-request comment, JSON for machines.
//! All read the one [`Plan`](super::Plan); none re-derives a change, and none ever sees a
//! secret value (the model holds none).

pub mod json;
pub mod markdown;
pub mod text;

/// What a rendering is for: a plan (what apply will do) or a drift report (what differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `plan`
    Plan,
    /// `drift`
    Drift,
}

/// Output format of `plan` and `drift`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human text (colour on a terminal).
    Text,
    /// Markdown for a pull-request comment.
    Markdown,
    /// Versioned JSON.
    Json,
}
