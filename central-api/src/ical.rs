//! A small iCalendar (RFC 5545) writer: the calendar export of shifts and road works.
//!
//! Only what the export needs: `VCALENDAR` with `VEVENT`s in UTC. Text values are escaped
//! (§3.3.11: backslash, `;`, `,`, newlines) and content lines folded at 75 octets
//! (§3.1) without splitting a UTF-8 character; lines end with CRLF.

use chrono::{DateTime, Utc};

/// One event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Globally unique and stable: `shift-12@central-api`.
    pub uid: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub summary: String,
    pub description: String,
    pub location: Option<String>,
}

/// The whole calendar, stamped `now`.
pub fn calendar(name: &str, events: &[Event], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let mut line = |l: String| fold_into(&mut out, &l);
    line("BEGIN:VCALENDAR".into());
    line("VERSION:2.0".into());
    line("PRODID:-//central-api//schedules//EN".into());
    line("CALSCALE:GREGORIAN".into());
    line(format!("X-WR-CALNAME:{}", escape(name)));
    for e in events {
        line("BEGIN:VEVENT".into());
        line(format!("UID:{}", escape(&e.uid)));
        line(format!("DTSTAMP:{}", stamp(now)));
        line(format!("DTSTART:{}", stamp(e.start)));
        line(format!("DTEND:{}", stamp(e.end)));
        line(format!("SUMMARY:{}", escape(&e.summary)));
        if !e.description.is_empty() {
            line(format!("DESCRIPTION:{}", escape(&e.description)));
        }
        if let Some(loc) = &e.location {
            line(format!("LOCATION:{}", escape(loc)));
        }
        line("END:VEVENT".into());
    }
    line("END:VCALENDAR".into());
    out
}

/// A UTC date-time in the basic format (`19970714T173000Z`).
pub fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Escapes a TEXT value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            // A CR of a CRLF is dropped with it; other controls are not allowed in TEXT.
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends `line` folded at 75 octets (continuations start with a space), then CRLF.
fn fold_into(out: &mut String, line: &str) {
    let mut width = 0;
    for c in line.chars() {
        let n = c.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += n;
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn escapes_text() {
        assert_eq!(escape("a,b;c\\d\ne\r"), "a\\,b\\;c\\\\d\\ne");
    }

    #[test]
    fn folds_at_75_octets_without_splitting_characters() {
        let mut out = String::new();
        let long = format!("SUMMARY:{}", "ü".repeat(60));
        fold_into(&mut out, &long);
        for l in out.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(l.len() <= 75, "{} octets: {l}", l.len());
        }
        let unfolded = out.trim_end_matches("\r\n").replace("\r\n ", "");
        assert_eq!(unfolded, long);
    }

    #[test]
    fn a_calendar_with_one_event() {
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 6, 0, 0).unwrap();
        let cal = calendar(
            "Shifts",
            &[Event {
                uid: "shift-1@central-api".into(),
                start: t,
                end: t + chrono::Duration::hours(8),
                summary: "P-1, early".into(),
                description: String::new(),
                location: None,
            }],
            t,
        );
        assert!(cal.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"));
        assert!(cal.contains("\r\nDTSTART:20260301T060000Z\r\nDTEND:20260301T140000Z\r\n"));
        assert!(cal.contains("SUMMARY:P-1\\, early\r\n"));
        assert!(cal.ends_with("END:VEVENT\r\nEND:VCALENDAR\r\n"));
    }
}
