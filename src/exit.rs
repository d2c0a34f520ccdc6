//! Exit codes, in one place.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success; no changes (plan with `--detailed-exitcode`), no drift, or apply completed |
//! | 1 | error: bad input, unreachable target, refused guard, stale plan, failed resource |
//! | 2 | changes present (plan with `--detailed-exitcode`) or drift found |

/// Success, and nothing to change.
pub const SUCCESS: u8 = 0;
/// Any error. Nothing was written to a target whose input was bad.
pub const ERROR: u8 = 1;
/// Changes present (`plan --detailed-exitcode`) or drift found (`drift`).
pub const CHANGES: u8 = 2;
