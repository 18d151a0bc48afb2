//! The time-based split: with `T` the latest event, the held-out (test) period is the
//! last horizon `(T - h, T]` and the training labels come from the horizon before it.
//! Features as of a cutoff see only events at or before it ([`super::features::Snapshot`]).

/// The cutoffs of a split, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// The latest event time: scores predict the horizon after it.
    pub latest: i64,
    /// `latest - horizon`: test rows as of here, labels in `(test, latest]`.
    pub test: i64,
    /// `test - horizon`: training rows as of here, labels in `(train, test]`.
    pub train: i64,
}

impl Cutoffs {
    pub fn new(latest: i64, horizon_ms: i64) -> Cutoffs {
        let test = latest.saturating_sub(horizon_ms);
        Cutoffs {
            latest,
            test,
            train: test.saturating_sub(horizon_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::features::{label_in_window, Snapshot};
    use super::super::history::{Moment, Timeline};
    use super::*;

    const DAY: i64 = 86_400_000;

    fn moment(day: i64, kind: u32, amount: f64) -> Moment {
        Moment {
            at: day * DAY,
            kind,
            source: 0,
            numbers: vec![(0, amount)],
            traits: Vec::new(),
        }
    }

    #[test]
    fn cutoffs_are_one_and_two_horizons_before_the_latest_event() {
        let c = Cutoffs::new(100 * DAY, 30 * DAY);
        assert_eq!((c.test, c.train), (70 * DAY, 40 * DAY));
    }

    #[test]
    fn no_event_after_the_cutoff_reaches_the_features() {
        // Purchases (kind 1) on days 10, 40 (the cutoff itself), 41 and 60; views (0) on
        // 20 and 50.
        let t = Timeline {
            moments: vec![
                moment(10, 1, 5.0),
                moment(20, 0, 0.0),
                moment(40, 1, 7.0),
                moment(41, 1, 100.0),
                moment(50, 0, 0.0),
                moment(60, 1, 1000.0),
            ],
            kinds: [
                ("email".to_owned(), 10 * DAY),
                ("phone".to_owned(), 45 * DAY),
            ]
            .into(),
        };
        let cutoff = 40 * DAY;
        let s = Snapshot::at(&t, cutoff, Some(1)).expect("history before the cutoff");
        assert_eq!(s.events_total, 3);
        assert_eq!(s.label_total, 2);
        assert_eq!(s.last, cutoff);
        assert_eq!(s.sums[&0][2], 12.0, "only amounts at or before the cutoff");
        assert_eq!(
            s.identifier_kinds, 1,
            "the phone was first seen after the cutoff"
        );
        // The label window is (cutoff, cutoff + 30d]: day 41 is in it, day 40 is not.
        assert!(label_in_window(&t, cutoff, 30 * DAY, 1));
        assert!(!label_in_window(&t, 45 * DAY, 10 * DAY, 1));
        // Nothing before the first event: the profile is not in that split.
        assert!(Snapshot::at(&t, 9 * DAY, Some(1)).is_none());
    }
}
