//! When a connection runs: an interval (`every 30s`, `every 15m`, `every 2h`), a shortcut
//! (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`), or a cron expression with 5
//! fields (minute hour day-of-month month day-of-week) or 6 (seconds first), evaluated in the
//! connection's `timezone` (an IANA name, default UTC).
//!
//! Cron expressions are parsed and evaluated by `croner` with Vixie cron's semantics: names
//! of months and weekdays (`JAN-MAR`, `MON-FRI`), `7` as Sunday, and when day-of-month and
//! day-of-week are both restricted a day matching either runs, unless one of the two fields
//! starts with `*` (`*/1`, `*/2`), which makes it a wildcard for that rule, as in Vixie cron:
//! `0 0 */1 * 1` runs on Mondays only. An expression that can never match (`0 0 30 2 *`) is
//! refused when the project is loaded. Across a daylight-saving change a time that does not
//! exist locally runs at the first existing time after it; a time that exists twice runs once.

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Every so often, counted from the previous due time.
    Every(std::time::Duration),
    /// A cron expression in a time zone.
    Cron(Box<CronSchedule>),
}

/// A cron expression and the time zone its fields are read in.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    text: String,
    cron: croner::Cron,
    zone: Tz,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.zone == other.zone
    }
}

/// How far ahead a cron expression must match at least once: the longest gap between two
/// 29 Februaries (2096 to 2104).
const LONGEST_GAP_DAYS: i64 = 8 * 366;

impl Schedule {
    /// Parse a schedule in UTC; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        Schedule::parse_in(text, None)
    }

    /// Parse a schedule whose cron fields are read in `timezone` (an IANA name such as
    /// `Europe/Berlin`; `None` is UTC). Intervals do not depend on the zone.
    pub fn parse_in(text: &str, timezone: Option<&str>) -> Result<Schedule, String> {
        let zone = parse_timezone(timezone)?;
        let t = text.trim();
        if let Some(every) = t.strip_prefix("every ") {
            return parse_duration(every.trim()).map(Schedule::Every);
        }
        let usage = "use `every 30s|15m|2h`, `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`, or cron `MIN HOUR DOM MON DOW`";
        let fields: Vec<&str> = t.split_whitespace().collect();
        // Vixie cron: a day field starting with `*` does not restrict the day for the
        // day-of-month OR day-of-week rule, so the two combine with AND.
        let (dom, dow) = match fields.len() {
            1 if t.starts_with('@') => ("*", "*"),
            5 => (fields[2], fields[4]),
            6 => (fields[3], fields[5]),
            _ => return Err(format!("`{text}` is not a schedule: {usage}")),
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .dom_and_dow(dom.starts_with('*') || dow.starts_with('*'))
            .build()
            .parse(t)
            .map_err(|e| format!("`{text}` is not a valid cron expression ({e}): {usage}"))?;
        let schedule = CronSchedule {
            text: t.to_string(),
            cron,
            zone,
        };
        // Refuse what never runs (`0 0 30 2 *`) instead of scheduling it years out.
        let from = Utc::now();
        match schedule.next_after(from) {
            Some(next) if next - from <= chrono::Duration::days(LONGEST_GAP_DAYS) => {}
            _ => {
                return Err(format!(
                    "`{text}` never matches a real date (no such day in the months it names)"
                ));
            }
        }
        Ok(Schedule::Cron(Box::new(schedule)))
    }

    /// The first due time strictly after `after`; `None` when a cron expression has no
    /// further match (only past the year 5000).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(d) => chrono::Duration::from_std(*d).ok().map(|d| after + d),
            Schedule::Cron(c) => c.next_after(after),
        }
    }

    /// The next `n` due times after `after` (for `inlet daemon --dry-run`).
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    /// The time zone cron fields are read in (UTC for intervals).
    pub fn timezone(&self) -> Tz {
        match self {
            Schedule::Every(_) => Tz::UTC,
            Schedule::Cron(c) => c.zone,
        }
    }
}

impl CronSchedule {
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // croner keeps the sub-second part of the time it starts from (10:00:01.856 gives
        // 10:00:03.856 for `*/3 * * * * *`): start from the whole second, so due times
        // fall on the second the expression names.
        let whole = after.with_nanosecond(0).unwrap_or(after);
        self.cron
            .find_next_occurrence(&whole.with_timezone(&self.zone), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// An IANA time zone name (`Europe/Berlin`, `America/New_York`, `UTC`); `None` is UTC.
pub fn parse_timezone(name: Option<&str>) -> Result<Tz, String> {
    match name {
        None => Ok(Tz::UTC),
        Some(n) => n.trim().parse::<Tz>().map_err(|_| {
            format!("`{n}` is not a time zone: use an IANA name such as `UTC`, `Europe/Berlin` or `America/New_York`")
        }),
    }
}

/// Parse `30s`, `15m`, `2h`, `1d`, `500ms`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30s, 15m, 2h"))?;
    let secs = match unit.trim() {
        "ms" => return Ok(std::time::Duration::from_millis(n)),
        "s" | "sec" | "secs" => n,
        "m" | "min" | "mins" => n * 60,
        "h" | "hour" | "hours" => n * 3600,
        "d" | "day" | "days" => n * 86400,
        _ => return Err(format!("`{s}`: unit must be ms, s, m, h or d")),
    };
    if secs == 0 {
        return Err("a schedule interval must be positive".into());
    }
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn next(s: &str, after: &str) -> DateTime<Utc> {
        Schedule::parse(s).unwrap().next_after(at(after)).unwrap()
    }

    #[test]
    fn cron_expressions_find_the_next_due_time() {
        assert_eq!(
            next("*/15 * * * *", "2026-11-23T10:07:12Z"),
            at("2026-11-23T10:15:00Z")
        );
        assert_eq!(
            next("*/15 * * * *", "2026-11-23T10:15:00Z"),
            at("2026-11-23T10:30:00Z")
        );
        // 2026-11-28 is a Saturday: next weekday run is Monday the 30th.
        assert_eq!(
            next("30 2 * * 1-5", "2026-11-27T03:00:00Z"),
            at("2026-11-30T02:30:00Z")
        );
        assert_eq!(
            next("@monthly", "2026-12-15T00:00:00Z"),
            at("2027-01-01T00:00:00Z")
        );
        assert_eq!(
            next("*/5 * * * * *", "2026-11-23T10:00:03Z"),
            at("2026-11-23T10:00:05Z")
        );
    }

    #[test]
    fn due_times_fall_on_whole_seconds_whatever_the_time_they_follow() {
        let after = at("2026-12-02T06:00:01.856Z");
        assert_eq!(
            next("*/3 * * * * *", "2026-12-02T06:00:01.856Z"),
            at("2026-12-02T06:00:03Z")
        );
        assert_eq!(
            next("0 * * * *", "2026-12-02T06:59:59.999Z"),
            at("2026-12-02T07:00:00Z")
        );
        // Strictly after: a due time is never the instant it follows, nor before it.
        assert_eq!(
            next("*/3 * * * * *", "2026-12-02T06:00:03Z"),
            at("2026-12-02T06:00:06Z")
        );
        assert_eq!(
            next("*/3 * * * * *", "2026-12-02T06:00:03.5Z"),
            at("2026-12-02T06:00:06Z")
        );
        let s = Schedule::parse_in("0 2 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(s.next_after(after).unwrap(), at("2026-12-03T01:00:00Z"));
    }

    #[test]
    fn day_fields_follow_vixie_cron() {
        // `*/1` is a wildcard for the OR rule: Mondays only (2026-12-07 is a Monday), not daily.
        let s = Schedule::parse("0 0 */1 * 1").unwrap();
        assert_eq!(
            s.upcoming(at("2026-12-02T06:00:00Z"), 3),
            vec![
                at("2026-12-07T00:00:00Z"),
                at("2026-12-14T00:00:00Z"),
                at("2026-12-21T00:00:00Z")
            ]
        );
        // Both restricted: the 1st or 15th of the month, or a Wednesday.
        let s = Schedule::parse("0 0 1,15 * 3").unwrap();
        assert_eq!(
            s.upcoming(at("2026-12-02T06:00:00Z"), 3),
            vec![
                at("2026-12-09T00:00:00Z"),
                at("2026-12-15T00:00:00Z"),
                at("2026-12-16T00:00:00Z")
            ]
        );
        // 7 is Sunday too (2026-12-06 is a Sunday).
        assert_eq!(
            next("0 0 * * 7", "2026-12-02T00:00:00Z"),
            at("2026-12-06T00:00:00Z")
        );
    }

    #[test]
    fn names_shortcuts_and_impossible_dates() {
        assert_eq!(
            next("0 9 * JAN-MAR MON-FRI", "2026-12-02T06:00:00Z"),
            at("2027-01-01T09:00:00Z")
        );
        assert_eq!(
            next("@yearly", "2026-12-02T06:00:00Z"),
            at("2027-01-01T00:00:00Z")
        );
        assert_eq!(
            next("@weekly", "2026-12-02T06:00:00Z"),
            at("2026-12-06T00:00:00Z")
        );
        let e = Schedule::parse("0 0 30 2 *").unwrap_err();
        assert!(e.contains("never matches"), "{e}");
        assert!(Schedule::parse("0 0 31 4,6,9,11 *").is_err());
        // 29 February exists, every four years.
        assert_eq!(
            next("0 0 29 2 *", "2026-12-02T00:00:00Z"),
            at("2028-02-29T00:00:00Z")
        );
    }

    #[test]
    fn time_zones_move_the_due_time_and_follow_daylight_saving() {
        let s = Schedule::parse_in("0 2 * * *", Some("Europe/Berlin")).unwrap();
        // Winter: UTC+1.
        assert_eq!(
            s.next_after(at("2026-12-02T06:00:00Z")).unwrap(),
            at("2026-12-03T01:00:00Z")
        );
        // Summer: UTC+2.
        assert_eq!(
            s.next_after(at("2026-07-01T06:00:00Z")).unwrap(),
            at("2026-07-02T00:00:00Z")
        );
        // 2026-03-29 02:00 does not exist in Berlin: that day runs once, at the first
        // existing time after it (03:00 CEST, 01:00 UTC); the next day as usual.
        let days = s.upcoming(at("2026-03-28T12:00:00Z"), 2);
        assert_eq!(days.len(), 2);
        assert!(days[0] >= at("2026-03-29T00:00:00Z") && days[0] < at("2026-03-30T00:00:00Z"));
        assert_eq!(days[1], at("2026-03-30T00:00:00Z"));
        let e = Schedule::parse_in("@daily", Some("Mars/Olympus")).unwrap_err();
        assert!(e.contains("Mars/Olympus") && e.contains("IANA"), "{e}");
        // Intervals do not depend on the zone.
        assert_eq!(
            Schedule::parse_in("every 2h", Some("Asia/Tokyo"))
                .unwrap()
                .next_after(at("2026-11-23T10:00:00Z")),
            Some(at("2026-11-23T12:00:00Z"))
        );
    }

    #[test]
    fn intervals_and_errors() {
        assert_eq!(
            Schedule::parse("every 30s").unwrap(),
            Schedule::Every(std::time::Duration::from_secs(30))
        );
        assert_eq!(
            next("every 2h", "2026-11-23T10:00:00Z"),
            at("2026-11-23T12:00:00Z")
        );
        assert!(Schedule::parse("every 0s").is_err());
        let e = Schedule::parse("61 * * * *").unwrap_err();
        assert!(e.contains("61 * * * *") && e.contains("cron"), "{e}");
        assert!(Schedule::parse("whenever").is_err());
        assert!(Schedule::parse("0 0 1 1 * 2030 5").is_err());
    }
}
