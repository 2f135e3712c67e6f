//! Cron schedules as Kubernetes' CronJob controller reads them (robfig/cron's standard
//! parser: five fields, names of months and days, or a macro), checked with croner so a bad
//! `spec.backup.schedule` is reported on the StoreCluster instead of failing the apply.

/// Checks `schedule` as the CronJob controller reads it (robfig/cron's standard parser): five
/// fields or a macro. croner alone also takes seconds, years and Quartz's `L`, `W` and `#`,
/// which Kubernetes refuses, so those are refused here first.
pub fn check_schedule(schedule: &str) -> Result<(), String> {
    let trimmed = schedule.trim();
    // @midnight is robfig/cron's name for @daily; croner does not know it.
    let pattern = if trimmed.eq_ignore_ascii_case("@midnight") {
        "@daily"
    } else {
        trimmed
    };
    if !pattern.starts_with('@') && pattern.split_whitespace().count() != 5 {
        return Err("expected five fields: minute hour day-of-month month day-of-week".to_owned());
    }
    // Names of months and days (JUL, WED) contain L and W: take them out before looking for
    // Quartz's operators.
    const NAMES: [&str; 19] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC", "SUN",
        "MON", "TUE", "WED", "THU", "FRI", "SAT",
    ];
    let unnamed = NAMES
        .iter()
        .fold(pattern.to_uppercase(), |text, name| text.replace(name, "1"));
    if !pattern.starts_with('@') && unnamed.contains(['L', 'W', '#']) {
        return Err("L, W and # are not supported by Kubernetes".to_owned());
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(pattern)
        .map(drop)
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_schedules_kubernetes_accepts_pass_and_others_are_refused() {
        for good in [
            "0 */6 * * *",
            "30 2 * * 0",
            "0 3 * * 7",
            "15 1 1-7 JUL,AUG MON-FRI",
            "@daily",
            "@midnight",
            "@hourly",
        ] {
            assert_eq!(check_schedule(good), Ok(()), "{good}");
        }
        for bad in [
            "0 0 */6 * * *",
            "every day",
            "61 * * * *",
            "0 0 L * *",
            "0 0 * * 5#3",
            "0 0 15W * *",
            "@sometimes",
        ] {
            assert!(check_schedule(bad).is_err(), "{bad} accepted");
        }
    }
}
