use super::store_conversation as store;
use crate::record::{AdvisorRef, NewAdvisor, PickingRule, Rejection};
use crate::store::conversations::*;
use crate::store::journal::{insert, NewEntry, Redo, Source};
use crate::store::rejections::{reject, report};
use rusqlite::Connection;
use std::collections::BTreeMap;

fn db() -> (tempfile::TempDir, Connection) {
    let d = tempfile::tempdir().unwrap();
    let c = crate::store::open(&d.path().join("t.db")).unwrap();
    (d, c)
}

fn advisor(name: &str) -> AdvisorRef {
    AdvisorRef::ByEmail(NewAdvisor {
        email: format!("{name}@acme.com"),
        first_name: name.into(),
        last_name: "X".into(),
        team: None,
        connector: None,
    })
}

fn draft(
    c: &Connection,
    path: &str,
    sha: &str,
    adv: AdvisorRef,
    rule: Option<PickingRule>,
) -> Draft {
    let e = insert(
        c,
        &NewEntry {
            account: "acme".into(),
            path: path.into(),
            size: 1,
            sha256: sha.into(),
            source: Source::Sftp,
        },
    )
    .unwrap();
    Draft {
        account: "acme".into(),
        path: path.into(),
        journal_id: e.id,
        size: 1,
        sha256: sha.into(),
        received_at: e.completed_at,
        started_at: None,
        deposit_date: None,
        window: "2026-02-11".parse().unwrap(),
        metadata: BTreeMap::new(),
        flags: vec![],
        advisor: adv,
        audio: None,
        picking: rule,
        archive: None,
        additional_metadata: BTreeMap::new(),
        crm: None,
        wait_until: None,
        existing: None,
        redo: None,
    }
}

fn picked_sequence(c: &Connection, advisors: &[&str], rule: PickingRule) -> Vec<bool> {
    advisors
        .iter()
        .enumerate()
        .map(|(i, a)| {
            match store(
                c,
                &draft(
                    c,
                    &format!("/a/{i}.mp3"),
                    &format!("s{i}"),
                    advisor(a),
                    Some(rule),
                ),
            )
            .unwrap()
            {
                Stored::Conversation { picked, .. } => picked,
                other => panic!("{other:?}"),
            }
        })
        .collect()
}

fn counters(c: &Connection) -> (i64, i64) {
    c.query_row("SELECT arrivals, picked FROM picking_windows", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .unwrap()
}

#[test]
fn ten_calls_at_twenty_percent_pick_the_fifth_and_tenth() {
    let (_d, c) = db();
    let names: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let rule = PickingRule {
        percent: Some(20),
        max_per_advisor: None,
    };
    let picks = picked_sequence(&c, &refs, rule);
    let picked: Vec<usize> = picks
        .iter()
        .enumerate()
        .filter(|(_, p)| **p)
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(picked, vec![5, 10]);
    assert_eq!(counters(&c), (10, 2));
}

#[test]
fn advisor_cap_alone_and_with_percent() {
    let (_d, c) = db();
    let rule = PickingRule {
        percent: None,
        max_per_advisor: Some(3),
    };
    let picks = picked_sequence(&c, &["ann"; 5], rule);
    assert_eq!(picks.iter().filter(|p| **p).count(), 3);

    let (_d, c) = db();
    let rule = PickingRule {
        percent: Some(20),
        max_per_advisor: Some(3),
    };
    let picks = picked_sequence(&c, &["ann"; 5], rule);
    assert_eq!(picks.iter().filter(|p| **p).count(), 1);
    let reasons: Vec<Option<String>> = c
        .prepare("SELECT picking_reason FROM conversations ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(reasons[0].as_deref(), Some("over_percent"));
    assert_eq!(reasons[4], None);
}

#[test]
fn redelivered_entry_and_identical_reupload_change_nothing() {
    let (_d, c) = db();
    let rule = PickingRule {
        percent: Some(50),
        max_per_advisor: None,
    };
    let d = draft(&c, "/a/x.mp3", "same", advisor("ann"), Some(rule));
    let first = store(&c, &d).unwrap();
    let Stored::Conversation { id, .. } = first else {
        panic!()
    };
    assert_eq!(store(&c, &d).unwrap(), Stored::Unchanged { id });
    let again = draft(&c, "/a/x.mp3", "same", advisor("ann"), Some(rule));
    assert_eq!(store(&c, &again).unwrap(), Stored::Unchanged { id });
    assert_eq!(counters(&c), (1, 0));
    let n: i64 = c
        .query_row("SELECT count(*) FROM advisors", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn new_content_supersedes_and_clears_rejections() {
    let (_d, c) = db();
    let bad = Rejection::new("audio", "not audio");
    reject(&c, "acme", "/a/x.mp3", None, &bad, "2026-02-11").unwrap();
    let d1 = draft(&c, "/a/x.mp3", "v1", advisor("ann"), None);
    let Stored::Conversation { id: id1, .. } = store(&c, &d1).unwrap() else {
        panic!()
    };
    let d2 = draft(&c, "/a/x.mp3", "v2", advisor("ann"), None);
    let Stored::Conversation { id: id2, .. } = store(&c, &d2).unwrap() else {
        panic!()
    };
    assert_ne!(id1, id2);
    let status: String = c
        .query_row(
            "SELECT status FROM conversations WHERE id = ?1",
            [id1],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "superseded");
    assert_eq!(counters(&c), (1, 1));
    let open: i64 = c
        .query_row(
            "SELECT count(*) FROM rejections WHERE cleared_at IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(open, 0);
    assert_eq!(report(&c, "acme", "2026-02-11").unwrap().len(), 1);
}

#[test]
fn replacing_a_waiting_call_keeps_the_window_counts() {
    let (_d, c) = db();
    let rule = PickingRule {
        percent: Some(50),
        max_per_advisor: None,
    };
    store(
        &c,
        &draft(&c, "/a/done.mp3", "d", advisor("ann"), Some(rule)),
    )
    .unwrap();
    assert_eq!(counters(&c), (1, 0));
    let mut waiting = draft(&c, "/a/w.mp3", "w1", AdvisorRef::Unknown, Some(rule));
    waiting.wait_until = Some("2999-01-01T00:00:00.000Z".into());
    store(&c, &waiting).unwrap();
    let mut replaced = draft(&c, "/a/w.mp3", "w2", AdvisorRef::Unknown, Some(rule));
    replaced.wait_until = waiting.wait_until.clone();
    store(&c, &replaced).unwrap();
    // Neither waiting version was ever counted, so nothing is taken out.
    assert_eq!(counters(&c), (1, 0));
}

#[test]
fn clearing_rejections_of_a_path() {
    let (_d, c) = db();
    let bad = Rejection::new("crm", "no key column");
    reject(&c, "acme", "/crm/a.csv", None, &bad, "2026-02-11").unwrap();
    reject(&c, "acme", "/crm/b.csv", None, &bad, "2026-02-11").unwrap();
    clear_rejections(&c, "acme", "/crm/a.csv").unwrap();
    let open: Vec<String> = c
        .prepare("SELECT path FROM rejections WHERE cleared_at IS NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(open, ["/crm/b.csv"]);
    // The customer's report for the day still lists both.
    assert_eq!(report(&c, "acme", "2026-02-11").unwrap().len(), 2);
}

#[test]
fn a_completed_call_is_not_rejected_by_a_late_timeout() {
    let (_d, c) = db();
    let mut waiting = draft(&c, "/a/w.mp3", "w", AdvisorRef::Unknown, None);
    waiting.wait_until = Some("2000-01-01T00:00:00.000Z".into());
    let Stored::Conversation { id, .. } = store(&c, &waiting).unwrap() else {
        panic!()
    };
    let seen = awaiting(&c, id).unwrap().unwrap();
    // Its row arrives and completes it before the timer's rejection runs.
    let mut done = draft(&c, "/a/w.mp3", "w", advisor("ann"), None);
    done.existing = Some(id);
    store(&c, &done).unwrap();
    let r = Rejection::new("metadata_csv", "no row in time");
    assert_eq!(
        reject_awaiting(&c, &seen, &r, "2026-02-11", 1000).unwrap(),
        None
    );
    let (status, rejections): (String, i64) = c
        .query_row(
            "SELECT status, (SELECT count(*) FROM rejections) FROM conversations WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((status.as_str(), rejections), ("ingested", 0));
}

#[test]
fn a_redo_keeps_the_pick_and_counts_unless_repick() {
    let (_d, c) = db();
    let rule = |percent| PickingRule {
        percent: Some(percent),
        max_per_advisor: Some(1),
    };
    let d = draft(&c, "/a/x.mp3", "same", advisor("ann"), Some(rule(100)));
    let Stored::Conversation { id, picked: true } = store(&c, &d).unwrap() else {
        panic!()
    };
    // Same content, a stricter rule: kept, counted once.
    let mut redo = draft(&c, "/a/x.mp3", "same", advisor("ann"), Some(rule(0)));
    redo.redo = Some(Redo {
        conversation: id,
        repick: false,
    });
    let Stored::Conversation { id: id2, picked } = store(&c, &redo).unwrap() else {
        panic!()
    };
    assert!(picked && id2 != id);
    assert_eq!(counters(&c), (1, 1));
    // Redoing the superseded one again changes nothing.
    redo.journal_id = draft(&c, "/a/x.mp3", "same", advisor("ann"), None).journal_id;
    assert_eq!(store(&c, &redo).unwrap(), Stored::Unchanged { id });
    // --repick: a fresh decision, the old counts removed.
    let mut repick = draft(&c, "/a/x.mp3", "same", advisor("ann"), Some(rule(0)));
    repick.redo = Some(Redo {
        conversation: id2,
        repick: true,
    });
    let Stored::Conversation { picked, .. } = store(&c, &repick).unwrap() else {
        panic!()
    };
    assert!(!picked);
    assert_eq!(counters(&c), (1, 0));
    let advisor_picked: i64 = c
        .query_row("SELECT sum(picked) FROM picking_advisors", [], |r| r.get(0))
        .unwrap();
    assert_eq!(advisor_picked, 0);
}

fn journaled(c: &Connection, path: &str, sha: &str) -> i64 {
    let e = NewEntry {
        account: "acme".into(),
        path: path.into(),
        size: 1,
        sha256: sha.into(),
        source: Source::Sftp,
    };
    insert(c, &e).unwrap().id
}

fn rejections_of(
    c: &Connection,
    journal_id: i64,
    sha: &str,
    rs: &[Rejection],
    more: usize,
) -> Recorded {
    let d = DepositRejections {
        account: "acme",
        path: "/audio/x.csv",
        journal_id,
        sha256: sha,
        rejections: rs,
        more,
        cap: 3,
        day: "2026-02-11",
    };
    reject_deposit(c, &d).unwrap()
}

#[test]
fn a_deposit_stores_its_cap_of_rejections_and_one_summary() {
    let (_d, c) = db();
    let rs: Vec<Rejection> = (1..=5)
        .map(|l| Rejection {
            line: Some(l),
            ..Rejection::new("metadata_csv", "expected 3 columns, found 2")
        })
        .collect();
    let j = journaled(&c, "/audio/x.csv", "a");
    let Recorded::New(rows) = rejections_of(&c, j, "a", &rs, 10) else {
        panic!("recorded nothing")
    };
    let lines: Vec<_> = rows.iter().map(|r| (r.line, r.reason.as_str())).collect();
    assert_eq!(
        lines,
        [
            (Some(1), "expected 3 columns, found 2"),
            (Some(2), "expected 3 columns, found 2"),
            (Some(3), "expected 3 columns, found 2"),
            (None, "… and 12 more rows rejected"),
        ]
    );
    assert_eq!(report(&c, "acme", "2026-02-11").unwrap(), rows);
}

#[test]
fn the_same_content_again_changes_nothing_while_its_rejection_is_open() {
    let (_d, c) = db();
    let bad = [Rejection::new("file_name", "expected 7 fields")];
    let first = journaled(&c, "/audio/x.csv", "a");
    assert!(matches!(
        rejections_of(&c, first, "a", &bad, 0),
        Recorded::New(_)
    ));
    let first_id: i64 = c
        .query_row("SELECT id FROM rejections", [], |r| r.get(0))
        .unwrap();
    let again = journaled(&c, "/audio/x.csv", "a");
    assert_eq!(
        rejections_of(&c, again, "a", &bad, 0),
        Recorded::Unchanged {
            rejection: first_id
        }
    );
    // Other content is a rejection of its own; so is the same content once
    // its rejection was cleared (a fixed version was accepted in between).
    let other = journaled(&c, "/audio/x.csv", "b");
    assert!(matches!(
        rejections_of(&c, other, "b", &bad, 0),
        Recorded::New(_)
    ));
    clear_rejections(&c, "acme", "/audio/x.csv").unwrap();
    let back = journaled(&c, "/audio/x.csv", "a");
    assert!(matches!(
        rejections_of(&c, back, "a", &bad, 0),
        Recorded::New(_)
    ));
    assert_eq!(report(&c, "acme", "2026-02-11").unwrap().len(), 3);
}
