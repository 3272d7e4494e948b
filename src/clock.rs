//! The clock the pages show, in a time zone named by TZ (`America/New_York`), with the zone data
//! built into the binary, so that a container with no zone files tells the time of day right.
//! No TZ: the system's zone, by name; neither: UTC. Nothing here reads a file that TZ names.

use jiff::Timestamp;
use jiff::tz::{TimeZone, TimeZoneDatabase};
use std::cell::RefCell;

/// UTC's other names in the zone database, which the pages show as UTC.
const UTC_ALIASES: [&str; 7] = [
    "Etc/UTC",
    "Etc/UCT",
    "Etc/Universal",
    "Etc/Zulu",
    "UCT",
    "Universal",
    "Zulu",
];

/// Where the pages' time of day comes from. Cheap to clone.
///
/// The zone data is jiff's bundled copy of the IANA database: compact bytes, of which only the
/// zone asked for is read. (A database built as tables of pointers would be relocated at every
/// start, and hold about 2 MiB of Penny's memory, for zones never used.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clock {
    zone: TimeZone,
}

/// The time as the pages show it, and the hour, for the greeting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Now {
    /// "Tuesday, December 1, 2026, 2:05:33 PM EST (America/New_York)"
    pub text: String,
    pub hour: u32,
}

impl Clock {
    pub fn utc() -> Clock {
        Clock {
            zone: TimeZone::UTC,
        }
    }

    /// The clock in the zone that TZ (`tz`) names, or the system's when it is unset or empty; a
    /// TZ that names no zone gives UTC and a warning to log, which never repeats the value
    /// unless it looks like a zone's name (a password pasted there must not reach the log).
    pub fn from_tz(tz: Option<&str>) -> (Clock, Option<String>) {
        let Some(tz) = tz.map(str::trim).filter(|tz| !tz.is_empty()) else {
            return (Clock::system(), None);
        };
        // POSIX allows a leading colon; a path into a zoneinfo directory names its zone. Neither
        // is opened: TZ=/dev/zero must not make a page wait on a read that never ends.
        let name = tz.strip_prefix(':').unwrap_or(tz);
        let name = name.rsplit_once("zoneinfo/").map_or(name, |(_, zone)| zone);
        if let Some(clock) = Clock::named(name) {
            return (clock, None);
        }
        let plausible = tz.len() <= 40
            && tz
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_+-:.".contains(c));
        let shown = if plausible {
            format!("TZ={tz:?} names no time zone")
        } else {
            "TZ does not name a time zone".to_string()
        };
        let warning = format!(
            "{shown} Penny knows (an IANA name such as America/New_York or Europe/Paris): \
             showing the time in UTC"
        );
        (Clock::utc(), Some(warning))
    }

    /// The system's zone by its name (/etc/localtime's link, and the like), or UTC.
    fn system() -> Clock {
        iana_time_zone::get_timezone()
            .ok()
            .and_then(|name| Clock::named(&name))
            .unwrap_or_else(Clock::utc)
    }

    /// The zone of that IANA name, from the bundled database only; UTC by any of its names
    /// (Etc/UTC, Zulu, …) is UTC, and shown so.
    fn named(name: &str) -> Option<Clock> {
        let zone = TimeZoneDatabase::bundled().get(name).ok()?;
        let utc = zone.iana_name().is_some_and(|name| {
            UTC_ALIASES
                .iter()
                .any(|alias| alias.eq_ignore_ascii_case(name))
        });
        Some(Clock {
            zone: if utc { TimeZone::UTC } else { zone },
        })
    }

    /// The zone's IANA name.
    pub fn zone_name(&self) -> &str {
        self.zone.iana_name().unwrap_or("UTC")
    }

    /// The time now. Formatting costs more than the rest of a page, so each thread does it
    /// once a second per zone.
    pub fn now(&self) -> Now {
        thread_local! {
            static LAST: RefCell<Option<(i64, TimeZone, Now)>> = const { RefCell::new(None) };
        }
        let now = Timestamp::now();
        let second = now.as_second();
        // Zones compared by name: every clock's comes from the one bundled database (or is UTC),
        // and comparing `TimeZone`s looks each name up in jiff's table of aliases, on every page.
        LAST.with_borrow_mut(|last| match last {
            Some((at, zone, shown))
                if *at == second && zone.iana_name() == self.zone.iana_name() =>
            {
                shown.clone()
            }
            _ => {
                let shown = self.at(now);
                *last = Some((second, self.zone.clone(), shown.clone()));
                shown
            }
        })
    }

    fn at(&self, time: Timestamp) -> Now {
        let local = time.to_zoned_datetime(self.zone.clone());
        let mut text = local
            .strftime("%A, %B %-d, %Y, %-I:%M:%S %p %Z")
            .to_string();
        if self.zone != TimeZone::UTC {
            text.push_str(&format!(" ({})", self.zone_name()));
        }
        Now {
            text,
            hour: local.hour() as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(tz: &str) -> Clock {
        let (clock, warning) = Clock::from_tz(Some(tz));
        assert_eq!(warning, None, "{tz}");
        clock
    }

    #[test]
    fn tz_names_a_zone_by_its_iana_name_with_or_without_a_colon_or_a_path() {
        for tz in [
            "America/New_York",
            ":America/New_York",
            "/usr/share/zoneinfo/America/New_York",
        ] {
            assert_eq!(clock(tz).zone_name(), "America/New_York", "{tz}");
        }
        assert_eq!(clock("UTC").zone_name(), "UTC");
        assert_eq!(clock("Etc/UTC"), Clock::utc(), "an alias of UTC is UTC");
        assert_eq!(clock("EST5EDT").zone_name(), "EST5EDT");
        assert_eq!(
            clock("europe/paris").zone_name(),
            "Europe/Paris",
            "as the database spells it"
        );
    }

    #[test]
    fn the_text_says_the_zone_and_the_hour_is_the_zones() {
        let noon_utc: Timestamp = "2026-12-01T16:05:33Z".parse().unwrap();
        let new_york = clock("America/New_York").at(noon_utc);
        assert_eq!(
            new_york.text,
            "Tuesday, December 1, 2026, 11:05:33 AM EST (America/New_York)"
        );
        assert_eq!(new_york.hour, 11);
        let utc = Clock::utc().at(noon_utc);
        assert_eq!(utc.text, "Tuesday, December 1, 2026, 4:05:33 PM UTC");
        assert_eq!(utc.hour, 16);
        let summer: Timestamp = "2026-07-01T16:00:00Z".parse().unwrap();
        assert!(
            clock("Europe/Paris")
                .at(summer)
                .text
                .contains("6:00:00 PM CEST")
        );
    }

    #[test]
    fn the_time_kept_for_the_second_is_each_zone_s_own() {
        for _ in 0..2 {
            for zone in ["America/New_York", "Europe/Paris", "America/New_York"] {
                let text = clock(zone).now().text;
                assert!(text.ends_with(&format!(" ({zone})")), "{zone}: {text}");
            }
            assert!(Clock::utc().now().text.ends_with(" UTC"));
        }
    }

    #[test]
    fn a_tz_that_names_no_zone_is_utc_with_one_warning_that_keeps_secrets() {
        for (tz, shown) in [
            ("Mars/Olympus_Mons", true),
            ("/dev/zero", true),
            ("CET-1CEST,M3.5.0,M10.5.0/3", false),
            ("hunter2 is my password", false),
        ] {
            let (clock, warning) = Clock::from_tz(Some(tz));
            assert_eq!(clock, Clock::utc(), "{tz}");
            let warning = warning.expect("a warning");
            assert_eq!(warning.contains(tz), shown, "{warning}");
            assert!(warning.contains("UTC"), "{warning}");
        }
    }

    #[test]
    fn no_tz_is_the_system_zone() {
        assert_eq!(Clock::from_tz(None).1, None);
        assert_eq!(Clock::from_tz(Some(" ")).1, None);
    }
}
