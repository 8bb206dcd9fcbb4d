//! The protocol's date-time, `DD/MM/YYYY HH:MM:SS` in UTC: parsed with
//! every part in range, and made from the clock with a civil-date
//! conversion of its own (no time-zone database needed).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A date and time as the protocol writes it: `DD/MM/YYYY HH:MM:SS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl DateTime {
    /// Parses exactly `DD/MM/YYYY HH:MM:SS` with every part in range.
    pub fn parse(s: &str) -> Option<DateTime> {
        let b = s.as_bytes();
        if b.len() != 19 {
            return None;
        }
        let layout = b"00/00/0000 00:00:00";
        for (c, l) in b.iter().zip(layout) {
            let ok = if *l == b'0' {
                c.is_ascii_digit()
            } else {
                c == l
            };
            if !ok {
                return None;
            }
        }
        let num = |from: usize, to: usize| -> u16 {
            b[from..to]
                .iter()
                .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'))
        };
        let dt = DateTime {
            day: num(0, 2) as u8,
            month: num(3, 5) as u8,
            year: num(6, 10),
            hour: num(11, 13) as u8,
            minute: num(14, 16) as u8,
            second: num(17, 19) as u8,
        };
        let days = days_in_month(dt.year, dt.month)?;
        (dt.day >= 1 && dt.day <= days && dt.hour < 24 && dt.minute < 60 && dt.second < 60)
            .then_some(dt)
    }

    /// Now, in UTC.
    pub fn now() -> DateTime {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        DateTime::from_unix(secs)
    }

    /// The UTC date and time `secs` seconds after 1970-01-01 00:00:00.
    pub fn from_unix(secs: u64) -> DateTime {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        // Howard Hinnant's days-to-civil algorithm.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
        DateTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        }
    }
}

fn days_in_month(year: u16, month: u8) -> Option<u8> {
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    Some(match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    })
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}/{:02}/{:04} {:02}:{:02}:{:02}",
            self.day, self.month, self.year, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_are_recognised_by_format_only() {
        assert_eq!(
            DateTime::parse("21/11/2026 10:00:00").unwrap().to_string(),
            "21/11/2026 10:00:00"
        );
        for bad in [
            "21/11/2026 10:00",
            "32/01/2026 10:00:00",
            "29/02/2025 10:00:00",
            "01/13/2026 10:00:00",
            "01/01/2026 24:00:00",
            "01-01-2026 10:00:00",
            "ana",
        ] {
            assert_eq!(DateTime::parse(bad), None, "{bad}");
        }
        assert!(DateTime::parse("29/02/2024 23:59:59").is_some());
        assert_eq!(
            DateTime::from_unix(1_795_255_200).to_string(),
            "21/11/2026 10:00:00"
        );
        assert_eq!(DateTime::from_unix(0).to_string(), "01/01/1970 00:00:00");
        assert_eq!(
            DateTime::from_unix(951_782_400).to_string(),
            "29/02/2000 00:00:00"
        );
    }
}
