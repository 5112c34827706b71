//! How lbsim writes a duration for a person, in one format everywhere: explanations and
//! log lines, the start-up banner and summary, `--print-config` and `/config`'s rows,
//! `lbsim facts`, the doctor's report and scenario timelines. Imports nothing of lbsim.

use std::time::Duration;

/// `300 s`, `2.5 s`, `1.003 s` (millisecond precision, no trailing zeros); under a second
/// in whole milliseconds, `500 ms`, and with a tenth below 10 ms, `0.3 ms` (a measured
/// 301.3 ms is "301 ms": the tenth is noise there).
pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{} ms", trim(format!("{ms:.1}")))
    } else if d < Duration::from_secs(1) {
        format!("{ms:.0} ms")
    } else {
        format!("{} s", trim(format!("{:.3}", d.as_secs_f64())))
    }
}

/// A duration as a flag value lbsim parses back (`--max-wait 330s`): `330s`, `2200ms`.
pub(crate) fn flag_value(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `2.500` → `2.5`, `3.000` → `3`; text without a point is left alone.
fn trim(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_the_same_everywhere() {
        for (d, text) in [
            (Duration::ZERO, "0 ms"),
            (Duration::from_micros(300), "0.3 ms"),
            (Duration::from_millis(5), "5 ms"),
            (Duration::from_micros(250_450), "250 ms"),
            (Duration::from_micros(5_250), "5.2 ms"),
            (Duration::from_millis(999), "999 ms"),
            (Duration::from_secs(1), "1 s"),
            (Duration::from_millis(2500), "2.5 s"),
            (Duration::from_millis(1003), "1.003 s"),
            (Duration::from_secs(300), "300 s"),
            (Duration::from_secs(3600), "3600 s"),
        ] {
            assert_eq!(duration(d), text, "{d:?}");
        }
    }

    #[test]
    fn flag_values_parse_back() {
        for d in [
            Duration::from_secs(330),
            Duration::from_millis(2200),
            Duration::from_millis(5),
        ] {
            let text = flag_value(d);
            assert_eq!(humantime::parse_duration(&text).ok(), Some(d), "{text}");
        }
    }
}
