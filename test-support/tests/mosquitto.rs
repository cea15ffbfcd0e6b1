//! The throwaway Mosquitto broker really works: delivery, persistence across restarts,
//! password mode.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use test_support::Mosquitto;

#[test]
fn message_published_reaches_a_mosquitto_sub_child() {
    let broker = Mosquitto::new();
    assert_ne!(
        broker.port(),
        1883,
        "must never be the machine's own broker"
    );
    assert_eq!(broker.url(), format!("mqtt://127.0.0.1:{}", broker.port()));

    // A plain `mosquitto_sub -C 1` child, as the brief's smoke test; it may not be
    // subscribed yet when we publish, so publish until it has printed the message.
    let mut child = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
        .args(["-t", "smoke/#", "-q", "1", "-C", "1", "-W", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..300 {
        broker.publish("smoke/a", "hello", 1);
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait().unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(out, "hello\n");
}

#[test]
fn subscription_gets_binary_payloads_in_order() {
    let broker = Mosquitto::new();
    let sub = broker.subscriber("bin/+").topic("other").qos(1).start();
    let payload: Vec<u8> = (0..=255u8).collect();
    broker.publish("bin/x", &payload, 1);
    broker.publish("bin/y", b"", 0);
    broker.publish("other", "third", 2);
    let first = sub.next_message();
    assert_eq!(first.topic, "bin/x");
    assert_eq!(first.payload, payload);
    let second = sub.next_message();
    assert_eq!((second.topic.as_str(), second.payload.len()), ("bin/y", 0));
    assert_eq!(sub.next_message().payload, b"third");
    assert!(sub.recv_timeout(Duration::from_millis(200)).is_none());

    let big: Vec<u8> = (0..256 * 1024).map(|i: u32| (i % 251) as u8).collect();
    broker.publish("bin/big", &big, 1);
    assert_eq!(sub.next_message().payload, big);
}

#[test]
fn retained_message_reaches_a_later_subscriber() {
    let broker = Mosquitto::new();
    broker.publish_retained("state/d1", "up", 1);
    let sub = broker.subscribe("state/#", 1);
    assert_eq!(sub.next_message().payload, b"up");
}

#[test]
fn persistent_session_keeps_queued_message_across_restart() {
    let broker = Mosquitto::new();
    let port = broker.port();
    let session = || {
        broker
            .subscriber("queue/events")
            .qos(1)
            .client_id("test-support-keeper")
            .persistent()
    };
    // Register the session, then go away.
    drop(session().start());

    broker.publish("queue/events", "while-away", 1);
    broker.restart();
    assert_eq!(broker.port(), port);
    assert!(broker.log_tail(50).contains("Saving in-memory database"));

    let sub = session().start();
    let msg = sub.next_message();
    assert_eq!(
        (msg.topic.as_str(), msg.payload.as_slice()),
        ("queue/events", &b"while-away"[..])
    );
}

#[test]
fn killed_broker_loses_what_it_had_not_saved() {
    // The control for the test above: without the save on SIGTERM the queue is gone.
    let broker = Mosquitto::new();
    let session = || {
        broker
            .subscriber("queue/events")
            .qos(1)
            .client_id("test-support-loser")
            .persistent()
    };
    drop(session().start());
    broker.publish("queue/events", "lost", 1);
    broker.kill();
    broker.start();
    let sub = session().start();
    assert_eq!(sub.recv_timeout(Duration::from_millis(500)), None);
}

#[test]
fn stopped_broker_refuses_then_comes_back() {
    let broker = Mosquitto::new();
    broker.stop();
    assert!(!broker.is_running());
    assert!(broker.try_publish("t", b"x", 0, false).is_err());
    broker.start();
    assert!(broker.is_running());
    broker.kill();
    broker.start();
    broker.publish("t", "x", 0);
}

#[test]
fn password_mode_refuses_anonymous_and_accepts_users() {
    let broker = Mosquitto::builder()
        .user("edge", "s3cret")
        .user("viewer", "other pass")
        .start();
    assert_eq!(broker.credentials(), Some(("edge", "s3cret")));

    // publish/subscribe use the first user.
    let sub = broker.subscribe("auth/t", 1);
    broker.publish("auth/t", "ok", 1);
    assert_eq!(sub.next_message().payload, b"ok");

    // The second user works too.
    let sub2 = broker
        .subscriber("auth/t")
        .credentials("viewer", "other pass")
        .start();
    broker.publish("auth/t", "two", 1);
    assert_eq!(sub2.next_message().payload, b"two");

    let port = broker.port().to_string();
    let refused = |extra: &[&str]| {
        let out = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-t", "auth/t", "-m", "x"])
            .args(extra)
            .output()
            .unwrap();
        !out.status.success()
    };
    assert!(refused(&[]), "anonymous must be refused");
    assert!(
        refused(&["-u", "edge", "-P", "wrong"]),
        "bad password must be refused"
    );
    assert!(!refused(&["-u", "edge", "-P", "s3cret"]));
}
