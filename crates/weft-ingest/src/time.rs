//! Timestamps: every form the common loggers write, to nanoseconds since the
//! Unix epoch (UTC). Hand-written rather than chrono's format-string parser:
//! this runs once per line on the hot path.
//!
//! Accepted text forms (`T` or space between date and time, any case):
//! - RFC 3339 / ISO 8601: `2023-11-14T22:13:20Z`, fractions of 1–9 digits
//!   (`.` or `,`), offsets `Z`, `+02:00`, `+0200`, `+02`;
//! - the same without a zone, read as UTC;
//! - Common Log Format: `14/Nov/2023:22:13:20 +0000`;
//! - a string of digits, read as an epoch number.
//!
//! Epoch numbers (integer or float) are scaled by magnitude: below 1e11 they
//! are seconds, below 1e14 milliseconds, below 1e17 microseconds, else
//! nanoseconds. That reads every date from 1973 to 5138 right in every unit.

/// The unit an epoch number was read in, kept so a record can be rebuilt
/// with its original number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochUnit {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl EpochUnit {
    pub fn nanos(self) -> i64 {
        match self {
            EpochUnit::Seconds => 1_000_000_000,
            EpochUnit::Millis => 1_000_000,
            EpochUnit::Micros => 1_000,
            EpochUnit::Nanos => 1,
        }
    }

    pub(crate) fn code(self) -> char {
        match self {
            EpochUnit::Seconds => 's',
            EpochUnit::Millis => 'm',
            EpochUnit::Micros => 'u',
            EpochUnit::Nanos => 'n',
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<EpochUnit> {
        Some(match c {
            b's' => EpochUnit::Seconds,
            b'm' => EpochUnit::Millis,
            b'u' => EpochUnit::Micros,
            b'n' => EpochUnit::Nanos,
            _ => return None,
        })
    }

    fn for_magnitude(v: f64) -> EpochUnit {
        let a = v.abs();
        if a < 1e11 {
            EpochUnit::Seconds
        } else if a < 1e14 {
            EpochUnit::Millis
        } else if a < 1e17 {
            EpochUnit::Micros
        } else {
            EpochUnit::Nanos
        }
    }
}

/// An integer epoch number in its unit, as nanoseconds.
pub fn from_epoch_int(v: i64) -> Option<(i64, EpochUnit)> {
    let unit = EpochUnit::for_magnitude(v as f64);
    v.checked_mul(unit.nanos()).map(|ns| (ns, unit))
}

/// A float epoch number in its unit, as nanoseconds (rounded to nearest).
pub fn from_epoch_float(v: f64) -> Option<(i64, EpochUnit)> {
    if !v.is_finite() {
        return None;
    }
    let unit = EpochUnit::for_magnitude(v);
    // Whole and fractional parts apart: `v * 1e9` alone would round away
    // everything under ~256 ns for present-day seconds.
    let whole = v.trunc();
    let ns = whole * unit.nanos() as f64;
    // i64 holds nanoseconds until the year 2262.
    if ns.abs() >= 9.2e18 {
        return None;
    }
    let frac = ((v - whole) * unit.nanos() as f64).round() as i64;
    Some(((whole as i64) * unit.nanos() + frac, unit))
}

/// A decimal epoch number as written (`1700000000.001404`), exactly: the
/// digits are scaled as integers, so no float rounding creeps into the
/// nanoseconds. Exponent forms fall back to [`from_epoch_float`].
pub fn from_epoch_decimal(raw: &str) -> Option<(i64, EpochUnit)> {
    if raw.contains(['e', 'E']) {
        return from_epoch_float(raw.parse().ok()?);
    }
    let (neg, body) = match raw.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, raw),
    };
    let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let w: i64 = whole.parse().ok()?;
    let unit = EpochUnit::for_magnitude(w as f64);
    let per = unit.nanos();
    // Fraction digits worth keeping: as many as the unit has below it in ns.
    let keep = per.ilog10() as usize;
    let mut f: i64 = 0;
    for (i, d) in frac.bytes().take(keep).enumerate() {
        f += (d - b'0') as i64 * 10i64.pow((keep - 1 - i) as u32);
    }
    let ns = w.checked_mul(per)?.checked_add(f)?;
    Some((if neg { -ns } else { ns }, unit))
}

/// Days from 1970-01-01 to the given proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date for a day count from 1970-01-01 (inverse of [`days_from_civil`]).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn num(&mut self, len: usize) -> Option<u32> {
        let s = self.b.get(self.i..self.i + len)?;
        let mut v = 0u32;
        for &c in s {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + (c - b'0') as u32;
        }
        self.i += len;
        Some(v)
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// `eat`, as an `Option` for `?`.
    fn expect(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }

    fn eat_any(&mut self, set: &[u8]) -> bool {
        match self.b.get(self.i) {
            Some(c) if set.contains(c) => {
                self.i += 1;
                true
            }
            _ => false,
        }
    }

    fn done(&self) -> bool {
        self.i == self.b.len()
    }
}

fn to_nanos(
    year: i64,
    month: u32,
    day: u32,
    (h, mi, s): (u32, u32, u32),
    frac: i64,
    offset_s: i64,
) -> Option<i64> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + (h * 3600 + mi * 60 + s) as i64 - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(frac)
}

/// Reads `.123` / `,123456789` (1–9 digits, more are truncated) as nanoseconds.
fn fraction(c: &mut Cursor<'_>) -> Option<i64> {
    if !c.eat_any(b".,") {
        return Some(0);
    }
    let start = c.i;
    let mut ns = 0i64;
    while let Some(&d) = c.b.get(c.i) {
        if !d.is_ascii_digit() {
            break;
        }
        if c.i - start < 9 {
            ns = ns * 10 + (d - b'0') as i64;
        }
        c.i += 1;
    }
    let digits = c.i - start;
    if digits == 0 {
        return None;
    }
    for _ in digits..9 {
        ns *= 10;
    }
    Some(ns)
}

/// Reads `Z`, `+hh:mm`, `+hhmm`, `+hh`, or nothing (UTC); seconds east of UTC.
fn zone(c: &mut Cursor<'_>) -> Option<i64> {
    if c.done() {
        return Some(0);
    }
    if c.eat_any(b"Zz") {
        return Some(0);
    }
    let sign = if c.eat(b'+') {
        1
    } else if c.eat(b'-') {
        -1
    } else {
        return None;
    };
    let h = c.num(2)?;
    let m = if c.done() {
        0
    } else {
        c.eat(b':');
        c.num(2)?
    };
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h as i64 * 3600 + m as i64 * 60))
}

/// `HH:MM:SS[.frac][ ]zone` to the end of input, completing the date already read.
fn clock_and_zone(c: &mut Cursor<'_>, year: i64, month: u32, day: u32) -> Option<i64> {
    let h = c.num(2)?;
    c.expect(b':')?;
    let mi = c.num(2)?;
    c.expect(b':')?;
    let s = c.num(2)?;
    let frac = fraction(c)?;
    c.eat(b' ');
    let off = zone(c)?;
    if !c.done() {
        return None;
    }
    to_nanos(year, month, day, (h, mi, s), frac, off)
}

/// `2023-11-14T22:13:20.123+02:00` and its variants (see the module docs).
fn iso(b: &[u8]) -> Option<i64> {
    let mut c = Cursor { b, i: 0 };
    let year = c.num(4)? as i64;
    c.expect(b'-')?;
    let month = c.num(2)?;
    c.expect(b'-')?;
    let day = c.num(2)?;
    if !c.eat_any(b"Tt ") {
        return None;
    }
    clock_and_zone(&mut c, year, month, day)
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `14/Nov/2023:22:13:20 +0000`
fn clf(b: &[u8]) -> Option<i64> {
    let mut c = Cursor { b, i: 0 };
    let day = c.num(2)?;
    c.expect(b'/')?;
    let mon = b.get(c.i..c.i + 3)?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(mon))? as u32 + 1;
    c.i += 3;
    c.expect(b'/')?;
    let year = c.num(4)? as i64;
    c.expect(b':')?;
    clock_and_zone(&mut c, year, month, day)
}

/// How a text timestamp was written, so a rebuilt record can say it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A date-time text form.
    Text(i64),
    /// Digits in a string, read as an epoch number.
    EpochText(i64, EpochUnit),
}

/// Parses a text timestamp; `None` when it is no form we know.
pub fn parse_text(s: &str) -> Option<Parsed> {
    let b = s.trim().as_bytes();
    if b.len() < 8 {
        if !b.is_empty() && b.iter().all(u8::is_ascii_digit) {
            let v: i64 = std::str::from_utf8(b).ok()?.parse().ok()?;
            return from_epoch_int(v).map(|(ns, u)| Parsed::EpochText(ns, u));
        }
        return None;
    }
    if b[4] == b'-' {
        return iso(b).map(Parsed::Text);
    }
    if b[2] == b'/' {
        return clf(b).map(Parsed::Text);
    }
    if b.iter().all(u8::is_ascii_digit) {
        let v: i64 = std::str::from_utf8(b).ok()?.parse().ok()?;
        return from_epoch_int(v).map(|(ns, u)| Parsed::EpochText(ns, u));
    }
    if b.iter().all(|c| c.is_ascii_digit() || *c == b'.') {
        return from_epoch_decimal(std::str::from_utf8(b).ok()?)
            .map(|(ns, u)| Parsed::EpochText(ns, u));
    }
    None
}

/// Nanoseconds as a float number of `unit`s, as near as f64 gets.
pub fn to_epoch_float(ns: i64, unit: EpochUnit) -> f64 {
    let n = unit.nanos();
    ns.div_euclid(n) as f64 + ns.rem_euclid(n) as f64 / n as f64
}

/// Formats nanoseconds since the epoch as RFC 3339 UTC with the shortest
/// fraction that is exact (none, 3, 6 or 9 digits).
pub fn format_rfc3339(ns: i64, out: &mut String) {
    use std::fmt::Write;
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if frac != 0 {
        if frac % 1_000_000 == 0 {
            let _ = write!(out, ".{:03}", frac / 1_000_000);
        } else if frac % 1_000 == 0 {
            let _ = write!(out, ".{:06}", frac / 1_000);
        } else {
            let _ = write!(out, ".{frac:09}");
        }
    }
    out.push('Z');
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z

    fn text(s: &str) -> Option<i64> {
        match parse_text(s)? {
            Parsed::Text(ns) | Parsed::EpochText(ns, _) => Some(ns),
        }
    }

    #[test]
    fn rfc3339_forms() {
        let s = BASE * 1_000_000_000;
        assert_eq!(text("2023-11-14T22:13:20Z"), Some(s));
        assert_eq!(text("2023-11-14t22:13:20z"), Some(s));
        assert_eq!(text("2023-11-14 22:13:20"), Some(s));
        assert_eq!(text("2023-11-14T22:13:20.123Z"), Some(s + 123_000_000));
        assert_eq!(text("2023-11-14T22:13:20,5"), Some(s + 500_000_000));
        assert_eq!(
            text("2023-11-14T22:13:20.123456789Z"),
            Some(s + 123_456_789)
        );
        assert_eq!(
            text("2023-11-14T22:13:20.1234567891Z"),
            Some(s + 123_456_789)
        );
        assert_eq!(text("2023-11-15T00:13:20+02:00"), Some(s));
        assert_eq!(text("2023-11-15T00:13:20+0200"), Some(s));
        assert_eq!(text("2023-11-14T21:13:20-01"), Some(s));
        assert_eq!(text("2023-11-15T00:13:20.000001 +02:00"), Some(s + 1_000));
    }

    #[test]
    fn common_log_format() {
        assert_eq!(
            text("14/Nov/2023:22:13:20 +0000"),
            Some(BASE * 1_000_000_000)
        );
        assert_eq!(
            text("15/nov/2023:00:13:20 +0200"),
            Some(BASE * 1_000_000_000)
        );
    }

    #[test]
    fn epoch_units_by_magnitude() {
        let s = BASE * 1_000_000_000;
        assert_eq!(from_epoch_int(BASE), Some((s, EpochUnit::Seconds)));
        assert_eq!(from_epoch_int(BASE * 1000), Some((s, EpochUnit::Millis)));
        assert_eq!(
            from_epoch_int(BASE * 1_000_000),
            Some((s, EpochUnit::Micros))
        );
        assert_eq!(from_epoch_int(s), Some((s, EpochUnit::Nanos)));
        let (ns, unit) = from_epoch_float(1_700_000_000.123456).unwrap();
        assert_eq!(unit, EpochUnit::Seconds);
        assert!((ns - (s + 123_456_000)).abs() < 1_000, "{ns}");
        assert_eq!(
            from_epoch_float(1_700_000_000.25),
            Some((s + 250_000_000, unit))
        );
        assert_eq!(text("1700000000123"), Some(s + 123_000_000));
        assert_eq!(from_epoch_float(f64::NAN), None);
        assert_eq!(from_epoch_float(1e30), None);
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        for bad in [
            "",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20+25:00",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20Zjunk",
            "2023-11-14",
            "14/Foo/2023:22:13:20 +0000",
            "12ab",
        ] {
            assert_eq!(text(bad), None, "{bad:?}");
        }
        assert!(text("2024-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn civil_round_trip_and_format() {
        for days in [-719_468, -1, 0, 1, 19_675, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        let mut out = String::new();
        format_rfc3339(BASE * 1_000_000_000 + 123_000_000, &mut out);
        assert_eq!(out, "2023-11-14T22:13:20.123Z");
        out.clear();
        format_rfc3339(-1, &mut out);
        assert_eq!(out, "1969-12-31T23:59:59.999999999Z");
        assert_eq!(text(&out), Some(-1));
    }
}
