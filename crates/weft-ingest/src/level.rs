//! Levels: every common spelling and numeric scheme to one of
//! trace, debug, info, warn, error, fatal (indexes into [`crate::model::LEVELS`]).

/// How a numeric level is to be read. The scheme comes from the field the
/// number was found in (see the alias lists in [`crate::config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumericScheme {
    /// Guess by range: 10–60 pino/bunyan, ≥ 1000 logback, 0–7 syslog.
    Auto,
    /// pino and bunyan: 10 trace … 60 fatal.
    Pino,
    /// RFC 5424 severity: 0 emergency … 7 debug.
    Syslog,
    /// OpenTelemetry SeverityNumber 1–24.
    Otel,
    /// logback/log4j `level_value`: 5000 trace … 50000 fatal.
    Logback,
}

/// Maps a level word (any case) to a level index.
pub fn from_text(s: &str) -> Option<u8> {
    let s = s.trim();
    if s.len() > 16 {
        return None;
    }
    let mut buf = [0u8; 16];
    let lower = &mut buf[..s.len()];
    lower.copy_from_slice(s.as_bytes());
    lower.make_ascii_lowercase();
    Some(match &*lower {
        b"trace" | b"trc" | b"finest" | b"finer" | b"verbose" | b"t" => 0,
        b"debug" | b"dbg" | b"fine" | b"d" => 1,
        b"info" | b"inf" | b"information" | b"informational" | b"notice" | b"i" | b"log" => 2,
        b"warn" | b"warning" | b"wrn" | b"w" => 3,
        b"error" | b"err" | b"eror" | b"severe" | b"e" => 4,
        b"fatal" | b"critical" | b"crit" | b"alert" | b"emerg" | b"emergency" | b"panic"
        | b"ftl" | b"f" | b"dpanic" => 5,
        _ => return None,
    })
}

/// Maps a numeric level to a level index under `scheme`.
pub fn from_number(v: i64, scheme: NumericScheme) -> Option<u8> {
    match scheme {
        NumericScheme::Auto => match v {
            10..=60 if v % 10 == 0 => from_number(v, NumericScheme::Pino),
            1000.. => from_number(v, NumericScheme::Logback),
            0..=7 => from_number(v, NumericScheme::Syslog),
            _ => None,
        },
        NumericScheme::Pino => match v {
            ..10 => None,
            10..=19 => Some(0),
            20..=29 => Some(1),
            30..=39 => Some(2),
            40..=49 => Some(3),
            50..=59 => Some(4),
            _ => Some(5),
        },
        NumericScheme::Syslog => match v {
            0..=2 => Some(5),
            3 => Some(4),
            4 => Some(3),
            5 | 6 => Some(2),
            7 => Some(1),
            _ => None,
        },
        NumericScheme::Otel => match v {
            1..=4 => Some(0),
            5..=8 => Some(1),
            9..=12 => Some(2),
            13..=16 => Some(3),
            17..=20 => Some(4),
            21..=24 => Some(5),
            _ => None,
        },
        NumericScheme::Logback => match v {
            ..5000 => None,
            5000..=9999 => Some(0),
            10000..=19999 => Some(1),
            20000..=29999 => Some(2),
            30000..=39999 => Some(3),
            40000..=49999 => Some(4),
            _ => Some(5),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LEVELS;

    fn name(i: Option<u8>) -> Option<&'static str> {
        i.map(|i| LEVELS[i as usize])
    }

    #[test]
    fn words_in_any_case() {
        for (w, want) in [
            ("INFO", "info"),
            ("Warning", "warn"),
            ("WARN", "warn"),
            ("err", "error"),
            ("CRIT", "fatal"),
            ("critical", "fatal"),
            ("SEVERE", "error"),
            ("fine", "debug"),
            ("notice", "info"),
            ("TRACE", "trace"),
            ("emerg", "fatal"),
            (" debug ", "debug"),
        ] {
            assert_eq!(name(from_text(w)), Some(want), "{w}");
        }
        assert_eq!(from_text("banana"), None);
        assert_eq!(from_text("a very long level word indeed"), None);
    }

    #[test]
    fn numeric_schemes() {
        use NumericScheme::*;
        assert_eq!(name(from_number(30, Auto)), Some("info"));
        assert_eq!(name(from_number(60, Auto)), Some("fatal"));
        assert_eq!(name(from_number(40000, Auto)), Some("error"));
        assert_eq!(name(from_number(3, Auto)), Some("error"));
        assert_eq!(name(from_number(9, Otel)), Some("info"));
        assert_eq!(name(from_number(17, Otel)), Some("error"));
        assert_eq!(name(from_number(24, Otel)), Some("fatal"));
        assert_eq!(name(from_number(4, Syslog)), Some("warn"));
        assert_eq!(name(from_number(20000, Logback)), Some("info"));
        assert_eq!(from_number(9, Auto), None);
        assert_eq!(from_number(0, Otel), None);
        assert_eq!(from_number(-1, Auto), None);
    }
}
