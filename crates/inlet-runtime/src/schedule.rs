//! When a connection runs: an interval (`every 30s`, `every 15m`, `every 2h`), a shortcut
//! (`@hourly`, `@daily`), or a cron expression in UTC with 5 fields (minute hour
//! day-of-month month day-of-week) or 6 (seconds first). Fields take `*`, numbers, ranges
//! `a-b`, lists `a,b` and steps `*/n`, `a-b/n`.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every so often, counted from the previous due time.
    Every(std::time::Duration),
    /// A cron expression.
    Cron(Box<Cron>),
}

/// The allowed values of each cron field, as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether day-of-month and day-of-week were both restricted (then either matches).
    day_or: bool,
}

impl Schedule {
    /// Parse a schedule; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let t = text.trim();
        if let Some(every) = t.strip_prefix("every ") {
            return parse_duration(every.trim()).map(Schedule::Every);
        }
        let t = match t {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            other => other,
        };
        let fields: Vec<&str> = t.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            _ => {
                return Err(format!(
                    "`{text}` is not a schedule: use `every 30s|15m|2h`, `@hourly`, `@daily`, or cron `MIN HOUR DOM MON DOW`"
                ));
            }
        };
        let field = |name: &str, s: &str, lo: u32, hi: u32| {
            parse_field(s, lo, hi).map_err(|e| format!("cron field {name} `{s}`: {e}"))
        };
        let mut weekdays = field("day-of-week", rest[4], 0, 7)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1; // 7 is Sunday too
        }
        Ok(Schedule::Cron(Box::new(Cron {
            seconds: field("seconds", sec, 0, 59)?,
            minutes: field("minute", rest[0], 0, 59)?,
            hours: field("hour", rest[1], 0, 23)?,
            days: field("day-of-month", rest[2], 1, 31)?,
            months: field("month", rest[3], 1, 12)?,
            weekdays,
            day_or: rest[2] != "*" && rest[4] != "*",
        })))
    }

    /// The first due time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Every(d) => after + Duration::from_std(*d).unwrap_or(Duration::seconds(60)),
            Schedule::Cron(c) => c.next_after(after),
        }
    }
}

impl Cron {
    fn matches_day(&self, t: DateTime<Utc>) -> bool {
        let dom = self.days & (1 << t.day()) != 0;
        let dow = self.weekdays & (1 << t.weekday().num_days_from_sunday()) != 0;
        if self.day_or { dom || dow } else { dom && dow }
    }

    fn next_after(&self, after: DateTime<Utc>) -> DateTime<Utc> {
        let mut t = after.with_nanosecond(0).unwrap_or(after) + Duration::seconds(1);
        // Bounded search: at most 5 years of minutes/hours/days skipped coarsely.
        for _ in 0..100_000 {
            if self.months & (1 << t.month()) == 0 {
                t = start_of_next_month(t);
                continue;
            }
            if !self.matches_day(t) {
                t = (t + Duration::days(1))
                    .with_hour(0)
                    .and_then(|x| x.with_minute(0))
                    .and_then(|x| x.with_second(0))
                    .unwrap_or(t + Duration::days(1));
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = (t + Duration::hours(1))
                    .with_minute(0)
                    .and_then(|x| x.with_second(0))
                    .unwrap_or(t + Duration::hours(1));
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t = (t + Duration::minutes(1))
                    .with_second(0)
                    .unwrap_or(t + Duration::minutes(1));
                continue;
            }
            if self.seconds & (1 << t.second()) == 0 {
                t += Duration::seconds(1);
                continue;
            }
            return t;
        }
        after + Duration::days(365 * 5)
    }
}

fn start_of_next_month(t: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    chrono::NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .unwrap_or(t + Duration::days(28))
}

fn parse_field(s: &str, lo: u32, hi: u32) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => (
                r,
                st.parse::<u32>().map_err(|_| format!("bad step `{st}`"))?,
            ),
            None => (part, 1),
        };
        if step == 0 {
            return Err("step 0".into());
        }
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (num(a)?, num(b)?)
        } else {
            let v = num(range)?;
            (v, if part.contains('/') { hi } else { v })
        };
        if a < lo || b > hi || a > b {
            return Err(format!("values must be within {lo}-{hi}"));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

fn num(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .map_err(|_| format!("`{s}` is not a number"))
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

    #[test]
    fn cron_expressions_find_the_next_due_time() {
        let s = Schedule::parse("*/15 * * * *").unwrap();
        assert_eq!(
            s.next_after(at("2026-11-23T10:07:12Z")),
            at("2026-11-23T10:15:00Z")
        );
        assert_eq!(
            s.next_after(at("2026-11-23T10:15:00Z")),
            at("2026-11-23T10:30:00Z")
        );
        let s = Schedule::parse("30 2 * * 1-5").unwrap();
        // 2026-11-28 is a Saturday: next weekday run is Monday the 30th.
        assert_eq!(
            s.next_after(at("2026-11-27T03:00:00Z")),
            at("2026-11-30T02:30:00Z")
        );
        let s = Schedule::parse("@monthly").unwrap();
        assert_eq!(
            s.next_after(at("2026-12-15T00:00:00Z")),
            at("2027-01-01T00:00:00Z")
        );
        let s = Schedule::parse("*/5 * * * * *").unwrap();
        assert_eq!(
            s.next_after(at("2026-11-23T10:00:03Z")),
            at("2026-11-23T10:00:05Z")
        );
    }

    #[test]
    fn intervals_and_errors() {
        assert_eq!(
            Schedule::parse("every 30s").unwrap(),
            Schedule::Every(std::time::Duration::from_secs(30))
        );
        assert_eq!(
            Schedule::parse("every 2h")
                .unwrap()
                .next_after(at("2026-11-23T10:00:00Z")),
            at("2026-11-23T12:00:00Z")
        );
        assert!(Schedule::parse("every 0s").is_err());
        assert!(
            Schedule::parse("61 * * * *")
                .unwrap_err()
                .contains("minute")
        );
        assert!(Schedule::parse("whenever").is_err());
    }
}
