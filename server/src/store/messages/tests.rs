//! The log's own tests: appends, dedup, seq, pages, reopen.

use super::*;
use crate::message::SenderType;

struct NoMetrics;
impl LogMetrics for NoMetrics {
    fn batch_written(&self, _: usize, _: usize, _: f64) {}
}

fn draft(conv: ConversationId, cmid: &str, kind: MessageKind) -> Draft {
    Draft {
        conversation_id: conv,
        sender: Sender {
            kind: SenderType::Visitor,
            id: "v".into(),
            name: "V".into(),
        },
        sender_key: [7; 16],
        client_msg_id: Some(cmid.into()),
        kind,
        content: format!("content {cmid}"),
        meta: serde_json::json!({}),
        attachment: None,
        start: false,
    }
}

fn open(dir: &Path) -> MessageLog {
    MessageLog::open(
        dir,
        Durability::Os,
        64,
        16,
        Arc::new(NoMetrics),
        Box::new(|_| {}),
    )
    .expect("open")
}

#[tokio::test]
async fn seq_dedup_paging_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conv = ConversationId::new();
    {
        let log = open(dir.path());
        for i in 1..=10 {
            let kind = if i % 3 == 0 {
                MessageKind::Note
            } else {
                MessageKind::Text
            };
            let appended = log
                .append(draft(conv, &format!("c{i}"), kind), None)
                .await
                .expect("append");
            assert_eq!(appended.message.seq, i);
            assert!(!appended.duplicate);
        }
        let again = log
            .append(draft(conv, "c4", MessageKind::Text), None)
            .await
            .expect("dup");
        assert!(again.duplicate);
        assert_eq!(again.message.seq, 4);
        // Same client id in another conversation is another message.
        let other = ConversationId::new();
        let fresh = log
            .append(draft(other, "c4", MessageKind::Text), None)
            .await
            .expect("other");
        assert_eq!(fresh.message.seq, 1);
        assert!(!fresh.duplicate);

        let all = log.page(conv, 0, None, 100, true).expect("page");
        assert_eq!(
            all.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
        let visible = log.page(conv, 0, None, 4, false).expect("page");
        assert_eq!(
            visible.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![1, 2, 4, 5]
        );
        let after = log.page(conv, 7, None, 100, true).expect("page");
        assert_eq!(
            after.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![8, 9, 10]
        );
        let before = log.page(conv, 0, Some(8), 3, true).expect("page");
        assert_eq!(
            before.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![5, 6, 7]
        );
        assert_eq!(log.page(other, 0, None, 100, true).expect("page").len(), 1);
        log.close().await;
    }
    let log = open(dir.path());
    assert_eq!(log.head(conv).expect("head").map(|h| h.last_seq), Some(10));
    let next = log
        .append(draft(conv, "c11", MessageKind::Text), None)
        .await
        .expect("append");
    assert_eq!(next.message.seq, 11);
    let dup = log
        .append(draft(conv, "c1", MessageKind::Text), None)
        .await
        .expect("dup");
    assert!(dup.duplicate);
    assert_eq!(dup.message.seq, 1);
    let decoded = dup.message.decode().expect("decode");
    assert_eq!(decoded.content, "content c1");
    assert_eq!(log.heads().expect("heads").len(), 2);
}

#[tokio::test]
async fn concurrent_identical_sends_store_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(open(dir.path()));
    let conv = ConversationId::new();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            log.append(draft(conv, "same", MessageKind::Text), None)
                .await
        }));
    }
    let mut fresh = 0;
    for task in tasks {
        let appended = task.await.expect("join").expect("append");
        assert_eq!(appended.message.seq, 1);
        if !appended.duplicate {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1);
    assert_eq!(log.page(conv, 0, None, 100, true).expect("page").len(), 1);
}

#[tokio::test]
async fn a_start_marker_is_written_with_its_message_and_kept_until_cleared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conv = ConversationId::new();
    {
        let log = open(dir.path());
        let mut first = draft(conv, "c1", MessageKind::Text);
        first.start = true;
        let appended = log.append(first.clone(), None).await.expect("append");
        assert!(appended.message.start);
        // A resend is a duplicate: no second marker.
        let again = log.append(first, None).await.expect("resend");
        assert!(again.duplicate);
        let next = log
            .append(draft(conv, "c2", MessageKind::Text), None)
            .await
            .expect("append");
        assert!(!next.message.start);
        assert_eq!(log.pending_starts().expect("markers"), [(conv, 1)]);
        log.close().await;
    }
    // Durable with its message: still there after a reopen.
    let log = open(dir.path());
    assert_eq!(log.pending_starts().expect("markers"), [(conv, 1)]);
    log.clear_starts(&[(conv, 1)]).expect("clear");
    assert!(log.pending_starts().expect("markers").is_empty());
    assert_eq!(log.head(conv).expect("head").map(|h| h.last_seq), Some(2));
}

#[tokio::test]
async fn closed_log_refuses_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    log.close().await;
    let error = log
        .append(draft(ConversationId::new(), "c1", MessageKind::Text), None)
        .await
        .expect_err("closed");
    assert!(matches!(error, LogError::Closed));
}

/// A closed log frees its store at once, though other handles of the
/// log remain (background tasks that have not yet noticed the
/// shutdown): the same process can open it again, and it holds what
/// was written.
#[tokio::test]
async fn a_closed_log_frees_its_store_for_the_next_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(open(dir.path()));
    let conversation = ConversationId::new();
    log.append(draft(conversation, "c1", MessageKind::Text), None)
        .await
        .expect("append");
    let still_held = Arc::clone(&log);
    log.close().await;
    assert!(matches!(
        still_held.head(conversation),
        Err(LogError::Unavailable(_))
    ));
    let again = open(dir.path());
    assert_eq!(
        again.head(conversation).expect("head").map(|h| h.last_seq),
        Some(1)
    );
    again.close().await;
}
