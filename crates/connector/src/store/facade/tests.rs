//! The facade's own promises, against a real store on disk: listings walk
//! everything held exactly once, a page at a time, a blocking task that
//! fails is reported one way, as `StoreError::Blocking`, and no more store
//! tasks run at once than the gate lets through.

use std::collections::HashSet;
use std::ops::ControlFlow;

use secrecy::SecretBox;

use super::{NewMember, Store};
use crate::domain::Email;
use crate::store::{
    InsertOutcome, Kind, NewInvitation, StoreError, Suppression, SuppressionSource,
};

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), &SecretBox::new(Box::new([3u8; 32]))).unwrap();
    (dir, store)
}

fn invitation(i: usize) -> NewInvitation {
    NewInvitation {
        campaign: "meters".into(),
        kind: Kind::Connect,
        version: 1,
        invitee: serde_json::from_value(serde_json::json!({
            "email": format!("p{i}@example.com"), "name": null, "external_ref": null,
            "mydexid": null, "campaign": null
        }))
        .unwrap(),
    }
}

#[tokio::test]
async fn invitations_are_walked_once_each_in_id_order_over_pages() {
    let (_dir, store) = open();
    let n = 1_300;
    for start in (0..n).step_by(500) {
        let batch = (start..(start + 500).min(n)).map(invitation).collect();
        let stored = store.insert_invitations(batch, None).await.unwrap();
        assert!(
            stored
                .iter()
                .all(|(_, o)| matches!(o, InsertOutcome::Inserted(_)))
        );
    }
    let mut ids = Vec::new();
    store
        .each_invitation(|inv| {
            ids.push(inv.id);
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
    assert_eq!(ids.len(), n, "every invitation once");
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in id order, no repeat"
    );
    let first = store.invitations_page(None, 10).await.unwrap();
    let next = store
        .invitations_page(first.last().map(|i| i.id), 10)
        .await
        .unwrap();
    assert_eq!(first.len() + next.len(), 20);
    assert!(next[0].id > first[9].id);
    assert!(
        store
            .invitations_page(Some(u64::MAX), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A walk stops when asked to.
    let mut seen = 0;
    store
        .each_invitation(|_| {
            seen += 1;
            if seen == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await
        .unwrap();
    assert_eq!(seen, 3);
}

#[tokio::test]
async fn members_and_suppressions_are_walked_once_each_over_pages() {
    let (_dir, store) = open();
    let members: Vec<NewMember> = (0..1_100)
        .map(|i| NewMember {
            uid: 1,
            connection_id: format!("{}-45678", 100_000 + i),
            mydexid: None,
            email: None,
            key: format!("key-{i}"),
            version: 1,
            campaign: None,
        })
        .collect();
    assert_eq!(store.import_members(members).await.unwrap(), 1_100);
    let mut conns = HashSet::new();
    store
        .each_member(|m| {
            assert!(conns.insert(m.connection_id), "a member twice");
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
    assert_eq!(conns.len(), 1_100);
    assert_eq!(store.member_count().await.unwrap(), 1_100);

    for i in 0..30 {
        let person = store
            .mail_keys()
            .person(&Email::parse(&format!("s{i}@example.com")).unwrap());
        let entry = Suppression {
            reason: "test".into(),
            source: SuppressionSource::Operator,
            at_ms: 1,
        };
        store.suppress(&person, entry).await.unwrap();
    }
    let mut persons = HashSet::new();
    let mut after = None;
    loop {
        let page = store.suppressions_page(after, 7).await.unwrap();
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        for (p, _) in page {
            assert!(persons.insert(p), "an entry twice");
        }
    }
    assert_eq!(persons.len(), 30);
    assert_eq!(store.suppressed_count().await.unwrap(), 30);
}

#[tokio::test]
async fn a_failed_blocking_task_is_reported_as_blocking() {
    let (_dir, store) = open();
    let failed = store
        .run(|_| -> crate::store::Result<()> { panic!("a bug in a store call") })
        .await;
    assert!(matches!(failed, Err(StoreError::Blocking(_))), "{failed:?}");
    // The store goes on working.
    assert_eq!(store.member_count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_calls_runs_a_few_at_a_time_and_every_one_ends() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (_dir, store) = open();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let (store, running, most) = (store.clone(), running.clone(), most.clone());
            tokio::spawn(async move {
                store
                    .run(move |core| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        running.fetch_sub(1, Ordering::SeqCst);
                        core.raw_counts()
                    })
                    .await
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        (1..=super::gate_size().max(4)).contains(&most),
        "{most} at once"
    );
}
