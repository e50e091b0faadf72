//! The outbox: every committed change has its event, written in the same
//! transaction; a refused change has none; consumed events are gone.

use super::*;
use crate::events::EventKind;

async fn kinds(reg: &Registry) -> Vec<(EventKind, Option<String>, Vec<String>)> {
    reg.outbox(100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.tag, e.tags))
        .collect()
}

#[tokio::test]
async fn pushes_and_deletes_are_recorded_in_order() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let first = push_image(&fx.reg, &r, "v1", b"one").await;
    fx.advance_secs(1);
    push_image(&fx.reg, &r, "v2", b"two").await;
    fx.advance_secs(1);
    fx.reg
        .manifest_put(&r, &reference("v3"), Some(IMAGE), {
            let m = fx.reg.manifest_get(&r, &reference("v1")).await.unwrap();
            m.body
        })
        .await
        .unwrap();

    let events = fx.reg.outbox(100).await.unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].digest.as_ref(), Some(&first));
    assert_eq!(events[0].media_type.as_deref(), Some(IMAGE));
    assert!(events[0].size.is_some_and(|s| s > 0));
    assert_eq!(events[0].repo, "p/app");
    assert!(events.windows(2).all(|w| w[0].id < w[1].id), "in order");

    fx.advance_secs(1);
    fx.reg.manifest_delete(&r, &reference("v2")).await.unwrap();
    fx.advance_secs(1);
    fx.reg
        .manifest_delete(&r, &Reference::Digest(first.clone()))
        .await
        .unwrap();
    let all = kinds(&fx.reg).await;
    assert_eq!(all[3], (EventKind::TagDeleted, Some("v2".into()), vec![]));
    let (kind, tag, mut tags) = all[4].clone();
    tags.sort();
    assert_eq!(
        (kind, tag, tags),
        (
            EventKind::ManifestDeleted,
            None,
            vec!["v1".into(), "v3".into()]
        )
    );

    fx.advance_secs(1);
    fx.reg.repository_delete(&r).await.unwrap();
    assert_eq!(kinds(&fx.reg).await[5].0, EventKind::RepositoryDeleted);
}

#[tokio::test]
async fn a_refused_change_has_no_event() {
    let fx = Fixture::new();
    let r = repo("p/app");
    let missing = Digest::sha256_of(b"never uploaded");
    let body = image(&missing, &[], serde_json::json!({}));
    fx.reg
        .manifest_put(&r, &reference("v1"), Some(IMAGE), body)
        .await
        .unwrap_err();
    fx.reg
        .manifest_delete(&r, &reference("nope"))
        .await
        .unwrap_err();
    assert!(fx.reg.outbox(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn consumed_events_are_gone_and_the_rest_stay() {
    let fx = Fixture::new();
    let r = repo("p/app");
    for i in 0..5u8 {
        fx.advance_secs(1);
        push_image(&fx.reg, &r, &format!("t{i}"), &[i]).await;
    }
    let events = fx.reg.outbox(2).await.unwrap();
    assert_eq!(events.len(), 2);
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    fx.reg.outbox_done(&ids).await.unwrap();
    let rest = fx.reg.outbox(10).await.unwrap();
    assert_eq!(rest.len(), 3);
    assert_eq!(rest[0].tag.as_deref(), Some("t2"));
}

/// A subscriber that fails at one event: nothing from there on is
/// consumed, and the next round hands it over again.
#[tokio::test]
async fn a_failing_subscriber_keeps_its_event_for_the_next_round() {
    use crate::events::{Dispatcher, Event, Subscriber};
    use crate::lock::LocalLocks;
    use std::sync::Mutex;

    struct Picky {
        seen: Mutex<Vec<String>>,
        refuse: Mutex<Option<String>>,
    }
    #[async_trait::async_trait]
    impl Subscriber for Picky {
        async fn handle(&self, event: &Event) -> Result<(), crate::CoreError> {
            let tag = event.tag.clone().unwrap_or_default();
            if self.refuse.lock().unwrap().as_deref() == Some(tag.as_str()) {
                return Err(crate::CoreError::internal("refused"));
            }
            self.seen.lock().unwrap().push(tag);
            Ok(())
        }
    }

    let fx = Fixture::new();
    let r = repo("p/app");
    for i in 0..4u8 {
        fx.advance_secs(1);
        push_image(&fx.reg, &r, &format!("t{i}"), &[i]).await;
    }
    let picky = Arc::new(Picky {
        seen: Mutex::default(),
        refuse: Mutex::new(Some("t2".into())),
    });
    let dispatcher = Dispatcher::new(fx.reg.clone(), Arc::new(LocalLocks::default()), "n1")
        .subscribe(picky.clone());
    dispatcher.drain().await.unwrap_err();
    assert_eq!(*picky.seen.lock().unwrap(), ["t0", "t1"]);
    assert_eq!(fx.reg.outbox(10).await.unwrap().len(), 2);
    *picky.refuse.lock().unwrap() = None;
    assert_eq!(dispatcher.drain().await.unwrap(), 2);
    assert_eq!(*picky.seen.lock().unwrap(), ["t0", "t1", "t2", "t3"]);
    assert!(fx.reg.outbox(10).await.unwrap().is_empty());
}
