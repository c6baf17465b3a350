//! An embassy-time driver on std's monotonic clock, for host programs that run the
//! layers on tokio (ESP-IDF programs get theirs from esp-idf-svc instead).
//!
//! One timer thread keeps the earliest wake-up per waker and sleeps on a condition
//! variable until the next one is due. It is an example's driver, not a product's:
//! enough for a server with a few hundred connections.
use std::sync::{Condvar, Mutex, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

struct StdDriver {
    start: OnceLock<Instant>,
    alarms: Mutex<Vec<(u64, Waker)>>,
    changed: Condvar,
    thread: OnceLock<()>,
}

embassy_time_driver::time_driver_impl!(static DRIVER: StdDriver = StdDriver {
    start: OnceLock::new(),
    alarms: Mutex::new(Vec::new()),
    changed: Condvar::new(),
    thread: OnceLock::new(),
});

impl StdDriver {
    fn ticks(&self) -> u64 {
        // embassy-time's default tick rate: 1 MHz.
        self.start.get_or_init(Instant::now).elapsed().as_micros() as u64
    }

    fn run_timer_thread(&'static self) {
        let mut alarms = self.alarms.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let now = self.ticks();
            let mut next = u64::MAX;
            alarms.retain(|(at, waker)| {
                if *at <= now {
                    waker.wake_by_ref();
                    false
                } else {
                    next = next.min(*at);
                    true
                }
            });
            alarms = if next == u64::MAX {
                self.changed.wait(alarms).unwrap_or_else(|p| p.into_inner())
            } else {
                let wait = Duration::from_micros(next - now);
                self.changed
                    .wait_timeout(alarms, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            };
        }
    }
}

impl embassy_time_driver::Driver for StdDriver {
    fn now(&self) -> u64 {
        self.ticks()
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        self.thread.get_or_init(|| {
            std::thread::Builder::new()
                .name("embassy-time".into())
                .spawn(|| DRIVER.run_timer_thread())
                .expect("spawn the timer thread");
        });
        let mut alarms = self.alarms.lock().unwrap_or_else(|p| p.into_inner());
        match alarms.iter_mut().find(|(_, w)| w.will_wake(waker)) {
            Some(alarm) => alarm.0 = alarm.0.min(at),
            None => alarms.push((at, waker.clone())),
        }
        self.changed.notify_one();
    }
}
