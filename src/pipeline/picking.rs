//! Picking: decides whether one conversation goes on to analysis,
//! from the counters of its window (the call's day in the account timezone).
//!
//! The decision is a pure function of the counters read inside the store
//! transaction that also records it, so a crash or a re-delivery never counts
//! a conversation twice. Invariant: with only a percentage, after any n
//! arrivals exactly floor(n × percent / 100) are picked; an advisor cap can
//! only delay a pick to the next eligible call, never add one.

pub(crate) use crate::record::{PickingRule, WindowCounts};

/// Why a conversation was stored with `picked = false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PickReason {
    OverPercent,
    AdvisorCap,
}

impl PickReason {
    /// The value stored on the conversation.
    pub fn as_str(self) -> &'static str {
        match self {
            PickReason::OverPercent => "over_percent",
            PickReason::AdvisorCap => "advisor_cap",
        }
    }
}

/// `Ok(())` when the conversation is picked. The percentage is checked first,
/// so a call that the quota would not take anyway is not blamed on its advisor.
pub(crate) fn decide(rule: &PickingRule, c: &WindowCounts) -> Result<(), PickReason> {
    if let Some(percent) = rule.percent {
        if c.picked >= quota(c.arrivals_before, percent) {
            return Err(PickReason::OverPercent);
        }
    }
    if let Some(cap) = rule.max_per_advisor {
        if c.advisor_picked >= u64::from(cap) {
            return Err(PickReason::AdvisorCap);
        }
    }
    Ok(())
}

/// floor(n × percent / 100) with n counting this conversation; computed in
/// u128 so no counter value can overflow.
fn quota(arrivals_before: u64, percent: u32) -> u64 {
    let n = u128::from(arrivals_before) + 1;
    let q = n * u128::from(percent) / 100;
    u64::try_from(q).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Plays arrivals through `decide` the way the store keeps its counters.
    fn simulate(rule: &PickingRule, advisors: &[&str]) -> Vec<Result<(), PickReason>> {
        let mut picked = 0;
        let mut per_advisor: HashMap<&str, u64> = HashMap::new();
        let mut out = Vec::new();
        for (i, advisor) in advisors.iter().enumerate() {
            let counts = WindowCounts {
                arrivals_before: i as u64,
                picked,
                advisor_picked: per_advisor.get(advisor).copied().unwrap_or(0),
            };
            let decision = decide(rule, &counts);
            if decision.is_ok() {
                picked += 1;
                *per_advisor.entry(advisor).or_default() += 1;
            }
            out.push(decision);
        }
        out
    }

    /// 1-based positions of the picked calls.
    fn picked_positions(decisions: &[Result<(), PickReason>]) -> Vec<usize> {
        (1..=decisions.len())
            .filter(|&i| decisions[i - 1].is_ok())
            .collect()
    }

    const OVER: Result<(), PickReason> = Err(PickReason::OverPercent);
    const CAP: Result<(), PickReason> = Err(PickReason::AdvisorCap);
    const PICK: Result<(), PickReason> = Ok(());

    #[test]
    fn simulations() {
        let rule = |percent, max_per_advisor| PickingRule {
            percent,
            max_per_advisor,
        };
        let cases: [(&str, PickingRule, Vec<&str>, Vec<usize>); 6] = [
            (
                "10 calls at 20%",
                rule(Some(20), None),
                vec!["a"; 10],
                vec![5, 10],
            ),
            (
                "cap 3, no percent",
                rule(None, Some(3)),
                vec!["a"; 5],
                vec![1, 2, 3],
            ),
            (
                "20% and cap 3",
                rule(Some(20), Some(3)),
                vec!["a"; 5],
                vec![5],
            ),
            ("no rule", rule(None, None), vec!["a"; 4], vec![1, 2, 3, 4]),
            ("0%", rule(Some(0), None), vec!["a"; 20], vec![]),
            ("100%", rule(Some(100), None), vec!["a"; 3], vec![1, 2, 3]),
        ];
        for (name, rule, advisors, want) in cases {
            assert_eq!(
                picked_positions(&simulate(&rule, &advisors)),
                want,
                "{name}"
            );
        }
    }

    /// 20%, A capped at 1: the 10th call (A) earns the second pick but A is
    /// capped, so the pick passes to the 11th call (B); the 12th (A) is then
    /// over the quota again.
    #[test]
    fn pick_blocked_by_cap_passes_to_next_eligible_call() {
        let rule = PickingRule {
            percent: Some(20),
            max_per_advisor: Some(1),
        };
        let advisors = [vec!["A"; 10], vec!["B", "A"]].concat();
        let want = [
            vec![OVER; 4],
            vec![PICK],
            vec![OVER; 4],
            vec![CAP, PICK, OVER],
        ]
        .concat();
        assert_eq!(simulate(&rule, &advisors), want);
    }

    #[test]
    fn reasons_as_stored() {
        assert_eq!(PickReason::OverPercent.as_str(), "over_percent");
        assert_eq!(PickReason::AdvisorCap.as_str(), "advisor_cap");
    }

    #[test]
    fn huge_counters_do_not_overflow() {
        let rule = PickingRule {
            percent: Some(100),
            max_per_advisor: Some(u32::MAX),
        };
        let counts = WindowCounts {
            arrivals_before: u64::MAX,
            picked: u64::MAX - 1,
            advisor_picked: 0,
        };
        assert_eq!(decide(&rule, &counts), Ok(()));
    }

    proptest! {
        #[test]
        fn percent_only_picks_exactly_the_floor(n in 0usize..400, p in 0u32..=100) {
            let rule = PickingRule { percent: Some(p), max_per_advisor: None };
            let picked = picked_positions(&simulate(&rule, &vec!["a"; n])).len() as u64;
            prop_assert_eq!(picked, n as u64 * u64::from(p) / 100);
        }

        #[test]
        fn caps_never_add_picks(advisors in proptest::collection::vec(0usize..4, 0..200), p in 0u32..=100, cap in 0u32..5) {
            let names = ["a", "b", "c", "d"];
            let advisors: Vec<&str> = advisors.iter().map(|&i| names[i]).collect();
            let rule = PickingRule { percent: Some(p), max_per_advisor: Some(cap) };
            let decisions = simulate(&rule, &advisors);
            let picked = picked_positions(&decisions).len() as u64;
            prop_assert!(picked <= advisors.len() as u64 * u64::from(p) / 100);
            for name in names {
                let mine = advisors.iter().zip(&decisions).filter(|(a, d)| **a == name && d.is_ok()).count();
                prop_assert!(mine as u64 <= u64::from(cap));
            }
        }
    }
}
