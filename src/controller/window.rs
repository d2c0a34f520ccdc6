//! Maintenance windows (`reconcile.windows`), as Argo CD's sync windows: `allow` windows are
//! when the controller may write, `deny` windows when it may not; a deny that matches wins.
//! Without `allow` windows writes are allowed at any time a deny does not match.
//!
//! Windows are weekdays and wall-clock times in one IANA time zone. An instant is checked in
//! the zone's civil time at that instant, minute by minute: a window that crosses midnight
//! (`to` before `from`) belongs to the day it starts. At a DST gap the skipped civil times do
//! not exist, so they never match (a window 02:00-03:00 on the night clocks spring forward
//! never opens); at a DST fold the repeated civil times match both times they occur.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use schemars::JsonSchema;
use serde::Deserialize;

/// `reconcile.windows`, as written.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowsSpec {
    /// The IANA time zone the windows' days and times are in (such as
    /// `America/Mexico_City`). Default `UTC`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// When the controller may write. Without any, it may write at any time no `deny` window
    /// matches.
    #[serde(default)]
    pub allow: Vec<WindowSpec>,
    /// When the controller may not write; a deny window wins over an allow window.
    #[serde(default)]
    pub deny: Vec<WindowSpec>,
}

/// One window, as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// The days the window starts on (`mon` to `sun`, or `monday` to `sunday`). Default: every
    /// day. A window that crosses midnight belongs to the day it starts.
    #[serde(default)]
    pub days: Option<Vec<Day>>,
    /// Start, `HH:MM` from `00:00` to `23:59`, in the windows' time zone.
    pub from: String,
    /// End (exclusive), `HH:MM` from `00:00` to `24:00`. Before `from`, the window crosses
    /// midnight (`22:00` to `02:00`); equal to `from` is an error.
    pub to: String,
    /// A name for the window in logs and notifications. Default: its place and times, such as
    /// `deny[1] (sat,sun 00:00-24:00 UTC)`.
    #[serde(default)]
    pub name: Option<String>,
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    /// Monday.
    #[serde(alias = "monday")]
    Mon,
    /// Tuesday.
    #[serde(alias = "tuesday")]
    Tue,
    /// Wednesday.
    #[serde(alias = "wednesday")]
    Wed,
    /// Thursday.
    #[serde(alias = "thursday")]
    Thu,
    /// Friday.
    #[serde(alias = "friday")]
    Fri,
    /// Saturday.
    #[serde(alias = "saturday")]
    Sat,
    /// Sunday.
    #[serde(alias = "sunday")]
    Sun,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// One validated window: minutes since midnight, `to` in `1..=1440`.
#[derive(Debug, Clone)]
struct Window {
    /// Monday first.
    days: [bool; 7],
    from: u16,
    to: u16,
    label: String,
}

impl Window {
    fn matches(&self, at: DateTime) -> bool {
        let day = at.weekday().to_monday_zero_offset() as usize;
        let minute = at.hour() as u16 * 60 + at.minute() as u16;
        if self.from < self.to {
            self.days[day] && (self.from..self.to).contains(&minute)
        } else {
            (self.days[day] && minute >= self.from)
                || (self.days[(day + 6) % 7] && minute < self.to)
        }
    }
}

/// Validated maintenance windows.
#[derive(Debug, Clone)]
pub struct Windows {
    tz: TimeZone,
    allow: Vec<Window>,
    deny: Vec<Window>,
}

/// Whether the controller may write at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It may.
    Open,
    /// A deny window matches.
    Denied {
        /// The deny window: its `name`, or its place and times.
        window: String,
    },
    /// No allow window matches.
    Closed {
        /// The next instant writes are allowed; `None` when the windows never open.
        next_open: Option<Timestamp>,
    },
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Open => f.write_str("open for writes"),
            Verdict::Denied { window } => write!(f, "inside deny window \"{window}\""),
            Verdict::Closed { next_open: Some(t) } => {
                write!(f, "outside the maintenance windows (next opens {t})")
            }
            Verdict::Closed { next_open: None } => {
                f.write_str("outside the maintenance windows (they never open)")
            }
        }
    }
}

impl Default for Windows {
    fn default() -> Self {
        Windows::always()
    }
}

impl Windows {
    /// No windows: always open.
    pub fn always() -> Windows {
        Windows {
            tz: TimeZone::UTC,
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }

    /// Whether the controller may write at `at`.
    pub fn check(&self, at: Timestamp) -> Verdict {
        let civil = self.tz.to_datetime(at);
        if let Some(w) = self.deny.iter().find(|w| w.matches(civil)) {
            return Verdict::Denied {
                window: w.label.clone(),
            };
        }
        if self.is_open(civil) {
            return Verdict::Open;
        }
        Verdict::Closed {
            next_open: self.next_open(at),
        }
    }

    /// A verdict in English with the next opening in the windows' time zone
    /// (`2026-12-01T01:00:00-06:00`) rather than in UTC as [`Verdict`]'s `Display` has it.
    pub fn describe(&self, verdict: &Verdict) -> String {
        match verdict {
            Verdict::Closed { next_open: Some(t) } => format!(
                "outside the maintenance windows (next opens {})",
                t.display_with_offset(self.tz.to_offset(*t))
            ),
            v => v.to_string(),
        }
    }

    fn is_open(&self, civil: DateTime) -> bool {
        !self.deny.iter().any(|w| w.matches(civil))
            && (self.allow.is_empty() || self.allow.iter().any(|w| w.matches(civil)))
    }

    /// The first whole minute after `at` that is open, within 8 days (a week, a window that
    /// crosses midnight and a DST shift): windows repeat weekly, so none means never.
    fn next_open(&self, at: Timestamp) -> Option<Timestamp> {
        let start = at.as_second().div_euclid(60) * 60;
        (1..=8 * 24 * 60)
            .filter_map(|k| Timestamp::from_second(start + k * 60).ok())
            .find(|&t| self.is_open(self.tz.to_datetime(t)))
    }
}

/// Validates `reconcile.windows`, reporting errors at `path` (such as `reconcile.windows`).
pub fn validate(
    spec: WindowsSpec,
    check: &mut crate::yaml::FileCheck<'_>,
    path: &str,
) -> Option<Windows> {
    match build(&spec, path) {
        Ok(w) => Some(w),
        Err(errors) => {
            for (at, message) in errors {
                check.error(&at, message);
            }
            None
        }
    }
}

/// [`validate`] without a file: the windows, or each error's path and message.
pub fn build(spec: &WindowsSpec, path: &str) -> Result<Windows, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let zone = spec.timezone.as_deref().unwrap_or("UTC");
    let tz = TimeZone::get(zone).ok();
    if tz.is_none() {
        let m =
            format!("unknown time zone \"{zone}\": use an IANA name such as America/Mexico_City");
        errors.push((format!("{path}.timezone"), m));
    }
    let mut list = |which: &str, list: &[WindowSpec]| -> Vec<Window> {
        let at = |i| format!("{path}.{which}[{i}]");
        let one = |(i, w)| window(w, &at(i), &format!("{which}[{i}]"), zone, &mut errors);
        list.iter().enumerate().filter_map(one).collect()
    };
    let (allow, deny) = (list("allow", &spec.allow), list("deny", &spec.deny));
    match tz {
        Some(tz) if errors.is_empty() => Ok(Windows { tz, allow, deny }),
        _ => Err(errors),
    }
}

/// One window at `at` (`reconcile.windows.allow[0]`), labelled `place` (`allow[0]`).
fn window(
    w: &WindowSpec,
    at: &str,
    place: &str,
    zone: &str,
    errors: &mut Vec<(String, String)>,
) -> Option<Window> {
    let (from, to) = (parse_time(&w.from, false), parse_time(&w.to, true));
    if from.is_none() {
        let m = format!(
            "\"{}\" is not a start time: write HH:MM, 00:00 to 23:59",
            w.from
        );
        errors.push((format!("{at}.from"), m));
    }
    if to.is_none() {
        let m = format!(
            "\"{}\" is not an end time: write HH:MM, 00:00 to 24:00",
            w.to
        );
        errors.push((format!("{at}.to"), m));
    }
    let mut days = [w.days.is_none(); 7];
    for d in w.days.iter().flatten() {
        days[*d as usize] = true;
    }
    if w.days.as_ref().is_some_and(Vec::is_empty) {
        let m = "an empty list of days never matches: leave `days` out for every day";
        errors.push((format!("{at}.days"), m.to_string()));
    }
    let (from, to) = (from?, to?);
    if from == to {
        let m = format!(
            "`to` equals `from` ({}): the window is empty; a whole day is \"00:00\" to \"24:00\"",
            w.to
        );
        errors.push((format!("{at}.to"), m));
        return None;
    }
    let label = w.name.clone().unwrap_or_else(|| {
        let on: Vec<&str> = (0..7).filter(|&d| days[d]).map(|d| DAYS[d]).collect();
        let on = if w.days.is_none() {
            "every day".to_string()
        } else {
            on.join(",")
        };
        format!("{place} ({on} {}-{} {zone})", hhmm(from), hhmm(to))
    });
    Some(Window {
        days,
        from,
        to,
        label,
    })
}

/// Minutes since midnight of `H:MM` or `HH:MM`; `24:00` only as an end.
fn parse_time(s: &str, end: bool) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let digits = |p: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(h, 1..=2) || !digits(m, 2..=2) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) if end => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

fn hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Day::*;

    fn win(days: &[Day], from: &str, to: &str) -> WindowSpec {
        let days = (!days.is_empty()).then(|| days.to_vec());
        let (from, to, name) = (from.into(), to.into(), None);
        WindowSpec {
            days,
            from,
            to,
            name,
        }
    }

    fn windows(tz: &str, allow: &[WindowSpec], deny: &[WindowSpec]) -> Windows {
        let (allow, deny) = (allow.to_vec(), deny.to_vec());
        let spec = WindowsSpec {
            timezone: Some(tz.into()),
            allow,
            deny,
        };
        build(&spec, "reconcile.windows").unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn open(w: &Windows, at: &str) -> bool {
        w.check(ts(at)) == Verdict::Open
    }

    /// The verdict at `at` in English, the next opening in the windows' zone.
    fn said(w: &Windows, at: &str) -> String {
        w.describe(&w.check(ts(at)))
    }

    const NEXT: &str = "outside the maintenance windows (next opens";

    // 2026-03-02 is a Monday.
    #[test]
    fn allow_only() {
        let w = windows("UTC", &[win(&[Mon], "01:00", "05:00")], &[]);
        assert!(open(&w, "2026-03-02T01:00:00Z"));
        assert!(open(&w, "2026-03-02T04:59:59Z"));
        assert!(!open(&w, "2026-03-03T02:00:00Z"));
        let next = Some(ts("2026-03-02T01:00:00Z"));
        assert_eq!(
            w.check(ts("2026-03-02T00:30:10Z")),
            Verdict::Closed { next_open: next }
        );
        let said = said(&w, "2026-03-02T05:00:00Z");
        assert_eq!(said, format!("{NEXT} 2026-03-09T01:00:00+00:00)"));
        assert!(open(&Windows::always(), "2026-03-02T05:00:00Z"));
    }

    #[test]
    fn deny_only() {
        let weekend = WindowSpec {
            name: Some("weekend".into()),
            ..win(&[Sat, Sun], "00:00", "24:00")
        };
        let w = windows("UTC", &[], &[weekend]);
        assert!(open(&w, "2026-03-06T23:59:00Z"));
        assert_eq!(
            said(&w, "2026-03-07T00:00:00Z"),
            "inside deny window \"weekend\""
        );
        assert!(!open(&w, "2026-03-08T23:59:59Z"));
        assert!(open(&w, "2026-03-09T00:00:00Z"));
    }

    #[test]
    fn deny_wins_over_allow() {
        let deny = [
            win(&[], "22:00", "23:00"),
            win(&[Sat, Sun], "00:00", "24:00"),
        ];
        let w = windows("America/Mexico_City", &[win(&[], "00:00", "24:00")], &deny);
        assert!(open(&w, "2026-03-02T12:00:00Z"));
        let v = w.check(ts("2026-03-07T12:00:00Z"));
        let window = "deny[1] (sat,sun 00:00-24:00 America/Mexico_City)".to_string();
        assert_eq!(v, Verdict::Denied { window });
        // 22:30 local is 04:30Z the next day.
        let said = said(&w, "2026-03-03T04:30:00Z");
        let window = "deny[0] (every day 22:00-23:00 America/Mexico_City)";
        assert_eq!(said, format!("inside deny window \"{window}\""));
        // Allowed only where denied: never open.
        let w = windows(
            "UTC",
            &[win(&[Sat], "01:00", "02:00")],
            &[win(&[Sat], "00:00", "03:00")],
        );
        assert_eq!(
            w.check(ts("2026-03-02T12:00:00Z")),
            Verdict::Closed { next_open: None }
        );
    }

    #[test]
    fn crossing_midnight_belongs_to_its_start_day() {
        let w = windows("UTC", &[win(&[Mon], "22:00", "02:00")], &[]);
        assert!(!open(&w, "2026-03-02T01:00:00Z"), "Monday 01:00");
        assert!(open(&w, "2026-03-02T22:00:00Z"), "Monday 22:00");
        assert!(open(&w, "2026-03-03T01:00:00Z"), "Tuesday 01:00");
        assert!(!open(&w, "2026-03-03T02:00:00Z"), "Tuesday 02:00");
        assert!(!open(&w, "2026-03-03T22:30:00Z"), "Tuesday 22:30");
    }

    #[test]
    fn end_of_day_24_00() {
        let w = windows("UTC", &[win(&[Mon], "20:00", "24:00")], &[]);
        assert!(open(&w, "2026-03-02T23:59:59Z"));
        assert!(!open(&w, "2026-03-03T00:00:00Z"));
        assert!(!open(&w, "2026-03-02T19:59:59Z"));
    }

    #[test]
    fn time_zone() {
        let w = windows("America/Mexico_City", &[win(&[], "01:00", "05:00")], &[]);
        assert!(open(&w, "2026-12-01T08:00:00Z"));
        let v = w.check(ts("2026-12-01T01:30:00Z"));
        assert_eq!(v.to_string(), format!("{NEXT} 2026-12-01T07:00:00Z)"));
        assert_eq!(w.describe(&v), format!("{NEXT} 2026-12-01T01:00:00-06:00)"));
    }

    #[test]
    fn dst_gap_never_matches() {
        // 2026-03-08 02:00 EST jumps to 03:00 EDT in New York: 02:30 does not exist.
        let w = windows("America/New_York", &[win(&[Sun], "02:00", "03:00")], &[]);
        assert!(!open(&w, "2026-03-08T06:59:00Z"), "01:59 EST");
        assert!(!open(&w, "2026-03-08T07:00:00Z"), "03:00 EDT");
        let said = said(&w, "2026-03-08T06:30:00Z");
        assert_eq!(said, format!("{NEXT} 2026-03-15T02:00:00-04:00)"));
        // The fold: 01:30 happens twice on 2026-11-01 and matches both times.
        let w = windows("America/New_York", &[win(&[Sun], "01:00", "02:00")], &[]);
        assert!(open(&w, "2026-11-01T05:30:00Z"), "01:30 EDT");
        assert!(open(&w, "2026-11-01T06:30:00Z"), "01:30 EST");
        assert!(!open(&w, "2026-11-01T07:00:00Z"), "02:00 EST");
    }

    #[test]
    fn invalid_inputs_at_their_paths() {
        let spec = WindowsSpec {
            timezone: Some("Mars/Olympus_Mons".into()),
            allow: vec![win(&[], "25:00", "05:00"), win(&[], "01:00", "01:00")],
            deny: vec![WindowSpec {
                days: Some(vec![]),
                ..win(&[], "24:00", "1:5")
            }],
        };
        let errors = build(&spec, "reconcile.windows").unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        let want = [
            "timezone",
            "allow[0].from",
            "allow[1].to",
            "deny[0].from",
            "deny[0].to",
            "deny[0].days",
        ];
        assert_eq!(paths, want.map(|p| format!("reconcile.windows.{p}")));
        assert!(errors[0].1.contains("Mars/Olympus_Mons"), "{}", errors[0].1);
        assert!(errors[2].1.contains("empty"), "{}", errors[2].1);
        for t in ["00:00", "9:30", "23:59"] {
            assert!(parse_time(t, false).is_some(), "{t}");
        }
        for t in [
            "24:00", "12:60", "-1:00", "12:5", "123:00", "12", "", "1:00:00", "+1:00",
        ] {
            assert!(parse_time(t, false).is_none(), "{t}");
        }
        assert_eq!(
            (parse_time("24:00", true), parse_time("24:01", true)),
            (Some(1440), None)
        );
    }

    #[test]
    fn yaml_contract() {
        let yaml = "timezone: America/Mexico_City\nallow:\n  - days: [mon, tuesday]\n    from: 01:00\n    to: \"05:00\"\ndeny:\n  - days: [sat, sun]\n    from: \"00:00\"\n    to: \"24:00\"\n    name: weekend\n";
        let spec: WindowsSpec = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(spec.allow[0].days, Some(vec![Mon, Tue]));
        assert_eq!(spec.allow[0].from, "01:00");
        assert!(open(&build(&spec, "w").unwrap(), "2026-03-03T08:00:00Z"));
        assert!(serde_saphyr::from_str::<WindowsSpec>("allow: []\nextra: 1\n").is_err());
        let typo = "from: '1:00'\nto: '2:00'\nday: [mon]\n";
        assert!(serde_saphyr::from_str::<WindowSpec>(typo).is_err());
        let empty: WindowsSpec = serde_saphyr::from_str("{}").unwrap();
        assert!(open(&build(&empty, "w").unwrap(), "2026-03-03T08:00:00Z"));
    }
}
