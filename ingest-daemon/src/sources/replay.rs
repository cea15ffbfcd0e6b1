//! Rebuilding at start the bins a crash left open, from the raw MQTT records.
//!
//! An MQTT message is acknowledged once its raw record is fsynced, but its vehicles count
//! in a sample only when their bin closes, up to `interval + allowed_lateness` later. A
//! `kill -9` or a power cut in between would lose them from the samples although the
//! broker, rightly, will never send them again. At start the daemon therefore replays the
//! raw records of the last moments before it stopped:
//!
//! - **Window.** The raw records appended in the `2 · (interval + lateness) + max skew`
//!   before the newest record in the spool (of either class) hold every message whose bin
//!   could still have been open at the stop.
//! - **No double counting.** The sample records of the same window tell, per
//!   (detector, lane), the newest bin already spooled. The lane's series resumes right
//!   after it ([`crate::aggregate::Aggregator::resume_series`]), so replayed events of
//!   spooled bins are late and dropped, and the others land in their bins again. A sample
//!   covering a replayed event was appended after that event arrived, hence inside the
//!   window: the window always holds the evidence it needs.
//! - **Redeliveries.** A message spooled as raw but not yet acknowledged at the stop comes
//!   again from the broker with the DUP flag. Its (topic, payload) is then found among the
//!   window's records and its events are not counted a second time
//!   ([`SourceReplay::is_redelivery`]); it is still spooled and acknowledged.
//!   A DUP message without a match (a message never received before) counts normally.
//!
//! - **State.** Replayed messages go through the same decoding as live ones, so the
//!   baselines of `onvif_counter` running counts are rebuilt from the window's messages
//!   (their vehicles in spooled bins are late and dropped, as above) before the first live
//!   message is counted against them.
//!
//! What the replay cannot restore: liveness between messages before the stop (the marks
//! are not spooled), so a replayed bin of sparse traffic may be flagged INSUFFICIENT; and
//! the baseline of a counter that sent nothing during the window (its first message after
//! the start only sets the baseline again).

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use tracing::{info, warn};

use crate::sources::mqtt::RawMessage;
use crate::spool::{RecordClass, Spool, SpoolError};

/// A raw message from the spool, with its original arrival time.
#[derive(Debug, Clone)]
pub struct ReplayMessage {
    pub arrival: DateTime<Utc>,
    pub message: RawMessage,
}

/// What the spool says about the moments before the last stop.
#[derive(Debug, Default)]
pub struct Replay {
    messages: HashMap<String, Vec<ReplayMessage>>,
    /// (detector id, road lane) → start of the bin after the newest spooled one.
    resume: HashMap<(String, u16), DateTime<Utc>>,
    window_start: Option<DateTime<Utc>>,
}

/// One source's share of a [`Replay`].
#[derive(Debug, Default)]
pub struct SourceReplay {
    pub messages: Vec<ReplayMessage>,
    /// (topic, payload) of the window's messages, with how many times each occurs: a DUP
    /// redelivery of one of them was already counted (or is being replayed).
    seen: HashMap<(String, Vec<u8>), u32>,
}

impl SourceReplay {
    /// True (once per spooled copy) when a message the broker flagged DUP is one of the
    /// window's: its events must not be counted again.
    pub fn is_redelivery(&mut self, topic: &str, payload: &[u8]) -> bool {
        // Lookups allocate only while the window has entries left.
        if self.seen.is_empty() {
            return false;
        }
        let key = (topic.to_owned(), payload.to_vec());
        match self.seen.get_mut(&key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                true
            }
            Some(_) => {
                self.seen.remove(&key);
                true
            }
            None => false,
        }
    }
}

impl Replay {
    /// Reads the window from the spool; `window` as described in the module documentation.
    pub fn from_spool(spool: &Spool, window: TimeDelta) -> Result<Self, SpoolError> {
        let Some(newest_ms) = spool.newest_appended_ms() else {
            return Ok(Self::default());
        };
        let since_ms = newest_ms - window.num_milliseconds();
        let mut replay = Self {
            window_start: DateTime::from_timestamp_millis(since_ms),
            ..Self::default()
        };
        let mut undecodable = 0u64;
        for record in spool.records_since(RecordClass::Raw, since_ms)? {
            let (Some(arrival), Some(message)) =
                (record.appended_at(), RawMessage::decode(&record.payload))
            else {
                undecodable += 1;
                continue;
            };
            replay
                .messages
                .entry(message.source_id.clone())
                .or_default()
                .push(ReplayMessage { arrival, message });
        }
        for record in spool.records_since(RecordClass::Sample, since_ms)? {
            let Some(Ok(sample)) = record.sample() else {
                continue;
            };
            let next = sample.bucket_start + TimeDelta::seconds(i64::from(sample.interval_s));
            let entry = replay
                .resume
                .entry((sample.detector_id, sample.lane))
                .or_insert(next);
            *entry = (*entry).max(next);
        }
        if undecodable > 0 {
            warn!(
                undecodable,
                "raw spool records that are not MQTT messages were not replayed"
            );
        }
        let total: usize = replay.messages.values().map(Vec::len).sum();
        if total > 0 {
            info!(
                messages = total,
                window_start = ?replay.window_start,
                "replaying the raw MQTT messages of the bins open at the last stop"
            );
        }
        Ok(replay)
    }

    /// Takes the messages of source `id` (none on a second call).
    pub fn take_source(&mut self, id: &str) -> SourceReplay {
        let messages = self.messages.remove(id).unwrap_or_default();
        let mut seen: HashMap<(String, Vec<u8>), u32> = HashMap::new();
        for m in &messages {
            *seen
                .entry((m.message.topic.clone(), m.message.payload.clone()))
                .or_default() += 1;
        }
        SourceReplay { messages, seen }
    }

    /// Where the series of a detector's lane resumes when its source replays messages: after
    /// the newest spooled bin, else at the window's start (nothing of it was spooled).
    pub fn resume_at(&self, detector_id: &str, road_lane: u16) -> Option<DateTime<Utc>> {
        self.resume
            .get(&(detector_id.to_owned(), road_lane))
            .copied()
            .or(self.window_start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::SpoolConfig;

    fn raw(topic: &str, payload: &str) -> Vec<u8> {
        RawMessage {
            source_id: "broker".into(),
            topic: topic.into(),
            qos: 1,
            payload: payload.as_bytes().to_vec(),
        }
        .encode()
        .expect("encode")
    }

    #[test]
    fn the_window_follows_the_newest_record_and_redeliveries_match_once_per_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spool =
            Spool::open(dir.path(), SpoolConfig::with_max_total_bytes(8 << 20)).expect("open");
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        // Long before the window: never replayed.
        spool.append_raw(t0, &raw("t", "old")).expect("append");
        let late = t0 + TimeDelta::hours(1);
        spool.append_raw(late, &raw("t", "a")).expect("append");
        spool.append_raw(late, &raw("t", "a")).expect("append");
        spool
            .append_raw(late + TimeDelta::seconds(5), &raw("t", "b"))
            .expect("append");
        spool.sync().expect("sync");

        let mut replay = Replay::from_spool(&spool, TimeDelta::seconds(80)).expect("replay");
        let mut src = replay.take_source("broker");
        let payloads: Vec<&[u8]> = src
            .messages
            .iter()
            .map(|m| &m.message.payload[..])
            .collect();
        assert_eq!(payloads, [&b"a"[..], b"a", b"b"]);
        assert!(src.is_redelivery("t", b"a"));
        assert!(src.is_redelivery("t", b"a"));
        assert!(
            !src.is_redelivery("t", b"a"),
            "only two copies were spooled"
        );
        assert!(
            !src.is_redelivery("other", b"b"),
            "the topic is part of the key"
        );
        assert!(replay.take_source("broker").messages.is_empty());
        assert_eq!(
            replay.resume_at("radar-1", 1),
            Some(late + TimeDelta::seconds(5) - TimeDelta::seconds(80)),
            "no sample spooled: resume at the window's start"
        );
    }
}
