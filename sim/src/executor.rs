//! A single-threaded executor in virtual time.
//!
//! Tasks run from a FIFO ready queue, so the interleaving is the same on every run.
//! When no task is ready the clock jumps straight to the earliest pending timer: a
//! 10 s TIME_WAIT costs one loop iteration, not 10 s.
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};

use embassy_time::{Duration, Instant};

use crate::time;

/// Serializes simulations: the clock is process-global, and `cargo test` runs the tests
/// of one binary on parallel threads.
static SIM_LOCK: Mutex<()> = Mutex::new(());

type TaskFuture = Pin<Box<dyn Future<Output = ()>>>;

/// The queue of tasks ready to be polled, shared with their wakers.
struct ReadyQueue {
    queue: Mutex<VecDeque<usize>>,
}

struct TaskWaker {
    id: usize,
    queued: AtomicBool,
    /// Weak: a waker may outlive its run inside a host's stack state, which is never
    /// freed (see `HOST_RETAINED_BYTES`); the queue must not live on with it.
    ready: Weak<ReadyQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel)
            && let Some(ready) = self.ready.upgrade()
        {
            ready
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back(self.id);
        }
    }
}

struct Task {
    future: Option<TaskFuture>,
    waker: Arc<TaskWaker>,
}

struct Executor {
    ready: Arc<ReadyQueue>,
    /// embassy-executor's raw executor, for firmware tasks spawned with a `Spawner`.
    #[cfg(feature = "embassy-executor")]
    embassy: crate::embassy::EmbassyExecutor,
    /// Indexed by task id; ids are never reused within a run. `None` once finished.
    tasks: RefCell<Vec<Option<Task>>>,
    polls: Cell<u64>,
}

impl Executor {
    fn new() -> Self {
        Self {
            ready: Arc::new(ReadyQueue {
                queue: Mutex::new(VecDeque::new()),
            }),
            #[cfg(feature = "embassy-executor")]
            embassy: crate::embassy::EmbassyExecutor::new(),
            tasks: RefCell::new(Vec::new()),
            polls: Cell::new(0),
        }
    }

    /// Polls the ready tasks of embassy-executor's raw executor, if any; true if it did.
    fn poll_embassy(&self) -> bool {
        #[cfg(feature = "embassy-executor")]
        if self.embassy.poll_if_pended() {
            self.polls.set(self.polls.get() + 1);
            return true;
        }
        false
    }

    fn add(&self, future: TaskFuture) -> usize {
        let mut tasks = self.tasks.borrow_mut();
        let id = tasks.len();
        let waker = Arc::new(TaskWaker {
            id,
            queued: AtomicBool::new(false),
            ready: Arc::downgrade(&self.ready),
        });
        tasks.push(Some(Task {
            future: Some(future),
            waker: waker.clone(),
        }));
        drop(tasks);
        waker.wake_by_ref();
        id
    }

    fn pop_ready(&self) -> Option<usize> {
        self.ready
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    /// Polls task `id` once. The future is taken out of the table while it runs, so it
    /// may spawn (which pushes to the table).
    fn poll_task(&self, id: usize) {
        let (mut future, waker) = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(Some(task)) = tasks.get_mut(id) else {
                return;
            };
            task.waker.queued.store(false, Ordering::Release);
            let Some(future) = task.future.take() else {
                return;
            };
            (future, task.waker.clone())
        };
        self.polls.set(self.polls.get() + 1);
        let waker = Waker::from(waker);
        let mut cx = Context::from_waker(&waker);
        let done = future.as_mut().poll(&mut cx).is_ready();
        let mut tasks = self.tasks.borrow_mut();
        if done {
            tasks[id] = None;
        } else if let Some(Some(task)) = tasks.get_mut(id) {
            task.future = Some(future);
        }
    }

    fn cancel(&self, id: usize) {
        let task = self.tasks.borrow_mut().get_mut(id).and_then(Option::take);
        // Dropped outside the borrow: a future's drop may spawn or cancel.
        drop(task);
    }

    /// Drops every task, one by one, so a drop that touches the table finds it free
    /// (tasks spawned by a drop are dropped too).
    fn drop_all(&self) {
        let mut id = 0;
        while id < self.tasks.borrow().len() {
            self.cancel(id);
            id += 1;
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Executor>>> = const { RefCell::new(None) };
}

fn current() -> Rc<Executor> {
    CURRENT.with(|c| {
        c.borrow()
            .clone()
            .expect("tcp_layers_sim: spawn() called outside tcp_layers_sim::run()")
    })
}

/// Clears the thread's executor when the run ends, even by panic.
struct CurrentGuard;
impl Drop for CurrentGuard {
    fn drop(&mut self) {
        // Tasks are dropped while the executor is still current, so a drop that
        // spawns or aborts finds it.
        let exec = CURRENT.with(|c| c.borrow().clone());
        if let Some(exec) = exec {
            exec.drop_all();
        }
        CURRENT.with(|c| c.borrow_mut().take());
    }
}

/// The virtual-time budget of [`run_with_limit`] ran out before the main future finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeLimit {
    /// The limit that was reached.
    pub limit: Duration,
}

impl std::fmt::Display for TimeLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "simulation reached its virtual time limit of {} ms",
            self.limit.as_millis()
        )
    }
}

impl std::error::Error for TimeLimit {}

/// Runs `main` and every task it spawns in virtual time, from time 0, and returns
/// `main`'s output. Tasks of [`spawn`] still running when `main` finishes are dropped;
/// tasks spawned with `spawner()` are not (see there).
///
/// # Panics
/// With "simulation stalled: no task ready and no timer pending" (after printing the
/// last packets of every [`Net`](crate::Net) of the run) when `main` can never finish.
pub fn run<T: 'static>(main: impl Future<Output = T> + 'static) -> T {
    match run_inner(None, main) {
        Ok(v) => v,
        Err(_) => unreachable!("no limit was set"),
    }
}

/// Like [`run`], but gives up once the virtual clock would pass `limit`.
pub fn run_with_limit<T: 'static>(
    limit: Duration,
    main: impl Future<Output = T> + 'static,
) -> Result<T, TimeLimit> {
    run_inner(Some(limit), main)
}

fn run_inner<T: 'static>(
    limit: Option<Duration>,
    main: impl Future<Output = T> + 'static,
) -> Result<T, TimeLimit> {
    let _serial = SIM_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        CURRENT.with(|c| c.borrow().is_none()),
        "tcp_layers_sim::run() cannot be nested"
    );
    time::reset();
    crate::net::reset_registry();
    let exec = Rc::new(Executor::new());
    CURRENT.with(|c| *c.borrow_mut() = Some(exec.clone()));
    let _guard = CurrentGuard;

    let output: Rc<RefCell<Option<T>>> = Rc::new(RefCell::new(None));
    let slot = output.clone();
    let main_id = exec.add(Box::pin(async move {
        let v = main.await;
        *slot.borrow_mut() = Some(v);
    }));
    let limit_ticks = limit.map(|l| l.as_ticks());

    loop {
        while let Some(id) = exec.pop_ready() {
            exec.poll_task(id);
            if id == main_id
                && let Some(v) = output.borrow_mut().take()
            {
                return Ok(v);
            }
        }
        if exec.poll_embassy() {
            continue;
        }
        match time::next_due() {
            None => {
                crate::net::print_registered_traces(40);
                panic!("simulation stalled: no task ready and no timer pending");
            }
            Some(at) => {
                if let (Some(lim), Some(limit)) = (limit_ticks, limit)
                    && at > lim
                {
                    time::set_now(lim);
                    return Err(TimeLimit { limit });
                }
                time::advance_to_next();
            }
        }
    }
}

/// The spawner of the current run's embassy-executor: spawn `#[embassy_executor::task]`
/// functions with it as firmware does with the one its `main` gets. They run beside the
/// tasks of [`spawn`], in the same virtual time; `SendSpawner::for_current_executor` works
/// inside them.
///
/// A task that has not finished when the run ends is never polled again and is not
/// dropped (embassy-executor cannot drop a task from outside): it keeps its slot of the
/// task's `static` pool for the rest of the process, so spawning that task again in a
/// later run fails with `SpawnError::Busy`. Run one such simulation per test binary
/// (every file in `tests/` is its own binary), or let the tasks end.
///
/// # Panics
/// When called outside [`run`].
#[cfg(feature = "embassy-executor")]
pub fn spawner() -> embassy_executor::Spawner {
    current().embassy.spawner()
}

/// The current virtual time (the same as `embassy_time::Instant::now()`).
pub fn now() -> Instant {
    Instant::from_ticks(time::now_ticks())
}

/// How many task polls the current run has made so far: a cost figure for tests that
/// want to show a loop does not spin.
pub fn polls() -> u64 {
    current().polls.get()
}

struct JoinState<T> {
    output: Option<T>,
    finished: bool,
    waker: Option<Waker>,
}

/// Owns the output of a task started with [`spawn`]. Await it for the output; drop it
/// to let the task run on detached; [`JoinHandle::abort`] to drop the task.
pub struct JoinHandle<T> {
    id: usize,
    state: Rc<RefCell<JoinState<T>>>,
}

impl<T> JoinHandle<T> {
    /// True once the task has finished (or was aborted).
    pub fn is_finished(&self) -> bool {
        self.state.borrow().finished
    }

    /// Drops the task now (its future is dropped where it last stopped).
    pub fn abort(&self) {
        current().cancel(self.id);
        let waker = {
            let mut s = self.state.borrow_mut();
            s.finished = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Takes the output if the task has finished.
    pub fn try_take(&mut self) -> Option<T> {
        self.state.borrow_mut().output.take()
    }
}

/// The task was aborted before it produced an output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aborted;

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, Aborted>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.state.borrow_mut();
        if let Some(v) = s.output.take() {
            return Poll::Ready(Ok(v));
        }
        if s.finished {
            return Poll::Ready(Err(Aborted));
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Starts `future` as a task of the current run. It runs until it finishes or the run
/// ends. Futures need not be `Send`.
///
/// # Panics
/// When called outside [`run`].
pub fn spawn<T: 'static>(future: impl Future<Output = T> + 'static) -> JoinHandle<T> {
    let state = Rc::new(RefCell::new(JoinState {
        output: None,
        finished: false,
        waker: None,
    }));
    let task_state = state.clone();
    let id = current().add(Box::pin(async move {
        let v = future.await;
        let waker = {
            let mut s = task_state.borrow_mut();
            s.output = Some(v);
            s.finished = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }));
    JoinHandle { id, state }
}

/// Yields once: the task goes to the back of the ready queue.
pub async fn yield_now() {
    embassy_futures::yield_now().await
}
