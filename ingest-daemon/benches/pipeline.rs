//! Events per second through the aggregator, fed by the simulator.
//!
//! The product goal is ≥ 2 million events/s per core for ring + aggregator. Three numbers:
//! * `aggregate`: pre-generated events (the generator's cost excluded), fed the way the
//!   daemon does: arrival-time order per source, `advance` every 1 000 events;
//! * `simulate`: the generator alone;
//! * `simulate+aggregate`: both, as in a soak test or demo.
//!
//! Run with `cargo bench -p ingest-daemon --bench pipeline` on an idle machine.

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ingest_daemon::aggregate::{Aggregator, AggregatorConfig, DetectorId, LaneMap};
use ingest_daemon::sim::{SimConfig, SimEvent, Simulator};

const LANES: u16 = 8;

fn span() -> (DateTime<Utc>, DateTime<Utc>) {
    let t = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(DateTime::UNIX_EPOCH)
    };
    // A weekday from the morning peak to the evening one.
    (t("2024-03-04T06:00:00Z"), t("2024-03-04T18:00:00Z"))
}

fn sim_config() -> SimConfig {
    SimConfig {
        seed: 2024,
        lanes: LANES,
        ..SimConfig::default()
    }
}

fn aggregator() -> (Aggregator, DetectorId) {
    let mut agg = match Aggregator::new(AggregatorConfig::default()) {
        Ok(agg) => agg,
        Err(e) => panic!("default config refused: {e}"),
    };
    let det = agg.add_detector("bench", "loop", &LaneMap::identity(LANES));
    (agg, det)
}

fn feed<'a>(
    agg: &mut Aggregator,
    det: DetectorId,
    events: impl Iterator<Item = &'a SimEvent>,
) -> usize {
    let mut out = Vec::with_capacity(1024);
    let mut emitted = 0;
    for (i, e) in events.enumerate() {
        black_box(agg.vehicle(det, &e.event, e.arrival));
        if i % 1000 == 999 {
            agg.advance(e.arrival, &mut out);
            emitted += out.len();
            out.clear();
        }
    }
    agg.flush_all(&mut out);
    emitted + out.len()
}

fn bench(c: &mut Criterion) {
    let (start, end) = span();
    let events: Vec<SimEvent> = Simulator::new(sim_config(), start, end).collect();
    let n = events.len() as u64;

    let mut g = c.benchmark_group("pipeline");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    g.bench_function("aggregate", |b| {
        b.iter_batched(
            aggregator,
            |(mut agg, det)| feed(&mut agg, det, events.iter()),
            BatchSize::LargeInput,
        );
    });
    g.bench_function("simulate", |b| {
        b.iter(|| Simulator::new(sim_config(), start, end).count());
    });
    g.bench_function("simulate+aggregate", |b| {
        b.iter_batched(
            aggregator,
            |(mut agg, det)| {
                let mut out = Vec::with_capacity(1024);
                for (i, e) in Simulator::new(sim_config(), start, end).enumerate() {
                    black_box(agg.vehicle(det, &e.event, e.arrival));
                    if i % 1000 == 999 {
                        agg.advance(e.arrival, &mut out);
                        out.clear();
                    }
                }
                agg.flush_all(&mut out);
                out.len()
            },
            BatchSize::LargeInput,
        );
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
