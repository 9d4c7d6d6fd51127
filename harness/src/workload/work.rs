//! The work kinds: what one thread does between its start and stop times,
//! returning how many iterations it completed.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{sleep_until, Rng};
use crate::probe::now_ns;
use crate::protocol::SCRATCH_BYTES;
use crate::scenario::Work;

/// Iterations done: in all, and inside the measurement window.
#[derive(Debug, Default, Clone)]
pub struct Count {
    pub total: u64,
    pub window: u64,
    /// A coupled `replay` task's sleeps in the window per waking group
    /// (`Couplings::wakers`' order): [ended by its wakeup, missed].
    pub coupled: Vec<[u64; 2]>,
    from: u64,
    to: u64,
}

impl Count {
    pub fn new(from: u64, to: u64) -> Count {
        Count {
            total: 0,
            window: 0,
            coupled: Vec::new(),
            from,
            to,
        }
    }

    /// A coupled sleep on waking group `k` ended at `now`, by its wakeup
    /// or (`woken` false) on its own.
    fn coupled_at(&mut self, k: usize, woken: bool, now: u64) {
        // `coupled` has a place for every waker (replay sizes it).
        if now >= self.from && now < self.to {
            self.coupled[k][usize::from(!woken)] += 1;
        }
    }

    /// One iteration, completed at `now`.
    fn hit_at(&mut self, now: u64) {
        self.total += 1;
        if now >= self.from && now < self.to {
            self.window += 1;
        }
    }

    fn hit(&mut self) {
        self.hit_at(now_ns());
    }
}

/// What a thread needs to do its work.
pub struct Ctx<'a> {
    pub index: usize,
    /// The group's index in the scenario.
    pub group: u32,
    /// CLOCK_MONOTONIC ns at which to stop.
    pub stop_at: u64,
    /// Where its iterations are counted.
    pub count: Count,
    pub rng: &'a mut Rng,
}

/// Resources shared by a group's threads (the pipes of pingpong pairs and
/// wake chains), created before any thread starts.
pub struct Plan {
    /// `pipes[i]` = (read end, write end); thread i reads `pipes[i]`.
    /// For `messaging`, a socket pair per receiver: (its end, the
    /// senders' end).
    pipes: Vec<(OwnedFd, OwnedFd)>,
    /// For `fan_out`: a futex word per ring, in memory shared with task
    /// processes forked later.
    rings: Option<SharedWords>,
    /// For `block_io`: the scratch device or file, opened with O_DIRECT.
    scratch: Option<Scratch>,
    /// For a coupled `replay` group: the mailbox and its place in it.
    mailbox: Option<(MailboxMap, super::Couplings)>,
}

/// Where `block_io` reads and writes: the VM's scratch disk or, on the
/// host target, an unnamed file.
struct Scratch {
    file: std::fs::File,
    /// Its size in bytes.
    len: u64,
    what: String,
}

impl Scratch {
    /// The VM's scratch disk `disk`, or without one (the host target) an
    /// unnamed file in `dir`.
    fn open(disk: Option<&Path>, dir: &Path) -> Result<Scratch> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dev) = disk {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(dev)
                .with_context(|| format!("opening the scratch disk {}", dev.display()))?;
            let len = std::fs::read_to_string(
                Path::new("/sys/block")
                    .join(dev.file_name().unwrap_or_default())
                    .join("size"),
            )
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .map_or(SCRATCH_BYTES, |sectors| sectors * 512);
            return Ok(Scratch {
                file,
                len,
                what: dev.display().to_string(),
            });
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_TMPFILE)
            .open(dir)
            .with_context(|| {
                format!(
                    "creating block_io's scratch file in {} (O_TMPFILE with O_DIRECT; the filesystem must support both)",
                    dir.display()
                )
            })?;
        file.set_len(SCRATCH_BYTES)
            .context("sizing block_io's scratch file")?;
        Ok(Scratch {
            file,
            len: SCRATCH_BYTES,
            what: format!("a scratch file in {}", dir.display()),
        })
    }
}

/// Words in an anonymous shared mapping (MAP_SHARED: a forked task process
/// sees the same ones), for futexes.
struct SharedWords {
    ptr: *mut std::sync::atomic::AtomicU32,
    len: usize,
}

// SAFETY: the words are atomics; the mapping lives as long as the plan.
unsafe impl Send for SharedWords {}
unsafe impl Sync for SharedWords {}

impl SharedWords {
    fn new(len: usize) -> Result<SharedWords> {
        let bytes = (len.max(1) * 4).next_multiple_of(4096);
        // SAFETY: a fresh anonymous mapping, zero-filled by the kernel.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mmap of the futex words");
        }
        Ok(SharedWords {
            ptr: ptr.cast(),
            len,
        })
    }

    fn word(&self, i: usize) -> &std::sync::atomic::AtomicU32 {
        assert!(i < self.len);
        // SAFETY: inside the mapping; zeroed memory is a valid AtomicU32.
        unsafe { &*self.ptr.add(i) }
    }
}

impl Drop for SharedWords {
    fn drop(&mut self) {
        let bytes = (self.len.max(1) * 4).next_multiple_of(4096);
        // SAFETY: the mapping made in new(), unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), bytes) };
    }
}

/// Waits on futex word `w` while it holds `seen`, at most `timeout`.
fn futex_wait(w: &std::sync::atomic::AtomicU32, seen: u32, timeout: Duration) {
    futex_wait_raw(w.as_ptr(), seen, timeout);
}

/// [`futex_wait`] on a word given by its address.
fn futex_wait_raw(w: *mut u32, seen: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: a shared (not private: task processes share it) futex wait
    // on a valid word with a relative timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            w,
            libc::FUTEX_WAIT,
            seen,
            &ts as *const libc::timespec,
        )
    };
}

/// Wakes every waiter of futex word `w`.
fn futex_wake_all(w: &std::sync::atomic::AtomicU32) {
    futex_wake(w, i32::MAX);
}

fn futex_wake(w: &std::sync::atomic::AtomicU32, n: i32) {
    futex_wake_raw(w.as_ptr(), n);
}

/// [`futex_wake`] on a word given by its address.
fn futex_wake_raw(w: *mut u32, n: i32) {
    // SAFETY: a shared futex wake of a valid word.
    unsafe { libc::syscall(libc::SYS_futex, w, libc::FUTEX_WAKE, n) };
}

/// The size of a mailbox of `words` words (8 bytes each): whole pages.
pub(super) fn mailbox_bytes(words: u32) -> usize {
    (words.max(1) as usize * std::mem::size_of::<u64>()).next_multiple_of(4096)
}

/// A mailbox word's fields. Its low half, the futex its waiting tasks
/// sleep on: a count of the wakeups ever handed (bits 0 to 15, wrapping:
/// a wakeup handed after a task looked changes the half it sleeps on),
/// and the wakeups handed to its waiting tasks and not yet taken (16 to
/// 31). Its high half: the wakeups kept because no task waited (32 to
/// 47), and its waiting tasks not handed one (48 to 63). A waiting task
/// is counted in the waiting or has a handed wakeup: it leaves with a
/// handed one (woken) or, at its deadline with none handed, as a waiter
/// (missed). A task that comes to wait takes a kept one if there is one;
/// a wakeup goes to a waiting task before it is kept, and a task that
/// comes to wait while one is handed sleeps before it takes one, so the
/// task that made a wakeup does not take it back from the one it woke
/// (as a server's request goes to the thread blocked on it). A
/// preference, not a guarantee: the kernel wakes a futex's sleepers in
/// order (within one policy and priority), and a task at its deadline
/// takes any handed wakeup and counts itself woken.
const HANDED: u64 = 1 << 16;
const KEPT: u64 = 1 << 32;
const WAITING: u64 = 1 << 48;

fn low_half(v: u64) -> u32 {
    v as u32
}

fn handed(v: u64) -> u64 {
    (v >> 16) & 0xffff
}

fn kept(v: u64) -> u64 {
    (v >> 32) & 0xffff
}

fn waiting(v: u64) -> u64 {
    v >> 48
}

/// A handing: one more handed, the count of handings on (wrapping inside
/// its 16 bits).
fn hand(v: u64) -> u64 {
    let count = (v + 1) & 0xffff;
    (v & !0xffff) + HANDED + count
}

#[cfg(not(target_endian = "little"))]
compile_error!("the couplings' mailbox sleeps on a word's low half at its own address");

/// The futex of a mailbox word: its low half.
fn low_futex(w: &std::sync::atomic::AtomicU64) -> *mut u32 {
    w.as_ptr().cast()
}

/// The couplings' mailbox (`super::Mailbox`) mapped into a group process
/// (and the task processes it forks): a word per woken group and waking
/// group, the wakeups made and not yet taken (see [`HANDED`]).
struct MailboxMap {
    ptr: *mut std::sync::atomic::AtomicU64,
    words: usize,
}

// SAFETY: the words are atomics; the mapping lives as long as the plan.
unsafe impl Send for MailboxMap {}
unsafe impl Sync for MailboxMap {}

impl MailboxMap {
    fn open(c: &super::Couplings) -> Result<MailboxMap> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&c.mailbox)
            .with_context(|| format!("opening the couplings' mailbox {}", c.mailbox.display()))?;
        let bytes = mailbox_bytes(c.words);
        // SAFETY: a shared mapping of a file at least `bytes` long (the
        // agent sized it); zeroed words are valid atomics.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mmap of the couplings' mailbox");
        }
        Ok(MailboxMap {
            ptr: ptr.cast(),
            words: c.words as usize,
        })
    }

    fn word(&self, i: u32) -> &std::sync::atomic::AtomicU64 {
        assert!((i as usize) < self.words);
        // SAFETY: inside the mapping (8-byte aligned: a page's start).
        unsafe { &*self.ptr.add(i as usize) }
    }

    /// Makes a wakeup on word `i`: hands it to a task waiting there and
    /// wakes one, or keeps it for the next that would wait. False
    /// (nothing made) when nobody waits and `most` are kept already.
    fn post(&self, i: u32, most: u32) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let w = self.word(i);
        let mut handing = false;
        let made = w.fetch_update(SeqCst, SeqCst, |v| {
            handing = waiting(v) > 0;
            if handing {
                Some(hand(v - WAITING))
            } else {
                (kept(v) < u64::from(most)).then_some(v + KEPT)
            }
        });
        if made.is_err() {
            return false;
        }
        if handing {
            futex_wake_raw(low_futex(w), 1);
        }
        true
    }

    /// Takes a wakeup from word `i`: a kept one at once, else waits for
    /// one to be handed until `deadline` at most. True when it took one,
    /// false when the deadline came first.
    fn take(&self, i: u32, deadline: u64) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let w = self.word(i);
        let was = w
            .fetch_update(SeqCst, SeqCst, |v| {
                Some(if kept(v) > 0 { v - KEPT } else { v + WAITING })
            })
            .expect("always updated");
        if kept(was) > 0 {
            return true;
        }
        // The wakeups handed before it came are others': it sleeps until
        // one is handed after (or a sleeper is woken for one).
        let mut seen = Some(low_half(was));
        loop {
            let now = now_ns();
            if let Some(seen) = seen.take().filter(|_| now < deadline) {
                futex_wait_raw(low_futex(w), seen, Duration::from_nanos(deadline - now));
                continue;
            }
            let v = w.load(SeqCst);
            if handed(v) > 0 {
                if w.compare_exchange(v, v - HANDED, SeqCst, SeqCst).is_ok() {
                    return true;
                }
                continue;
            }
            if now >= deadline {
                // None handed: it leaves as a waiter (it is counted in
                // the waiting or has a handed wakeup, and none is).
                if w.compare_exchange(v, v - WAITING, SeqCst, SeqCst).is_ok() {
                    return false;
                }
                continue;
            }
            // Sleeps only while nothing is handed: a wakeup handed after
            // the look above ends the wait at once.
            seen = Some(low_half(v));
        }
    }
}

impl Drop for MailboxMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in open(), unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), mailbox_bytes(self.words as u32)) };
    }
}

/// A coupled `replay` task's part in the mailbox.
struct Link<'a> {
    mailbox: &'a MailboxMap,
    couplings: &'a super::Couplings,
    /// This group's index, and the task's index in it.
    group: u32,
    index: u32,
}

fn socketpair() -> Result<(OwnedFd, OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for the two descriptors.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("socketpair()");
    }
    // SAFETY: two fresh descriptors, owned from here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = std::io::pipe().context("pipe()")?;
    Ok((r.into(), w.into()))
}

impl Plan {
    /// What `work` needs, for `threads` tasks. `block_io` uses the VM's
    /// scratch disk `disk`, or without one an unnamed file in `output_dir`
    /// (the group's results directory).
    pub fn new(
        work: &Work,
        threads: usize,
        disk: Option<&Path>,
        output_dir: &Path,
        couplings: Option<&super::Couplings>,
    ) -> Result<Plan> {
        let pipes = match work {
            Work::Pingpong { .. } | Work::WakeChain => {
                (0..threads).map(|_| pipe()).collect::<Result<_>>()?
            }
            Work::Messaging { .. } => (0..threads / 2)
                .map(|_| socketpair())
                .collect::<Result<_>>()?,
            _ => Vec::new(),
        };
        let rings = match work {
            Work::FanOut { workers, .. } => {
                Some(SharedWords::new(threads / (*workers as usize + 1))?)
            }
            _ => None,
        };
        let scratch = match work {
            Work::BlockIo { .. } => Some(Scratch::open(disk, output_dir)?),
            _ => None,
        };
        let mailbox = couplings.map(MailboxMap::open).transpose()?;
        Ok(Plan {
            pipes,
            rings,
            scratch,
            mailbox: mailbox.zip(couplings.cloned()),
        })
    }

    pub fn run(&self, work: &Work, cx: Ctx) -> Result<Count> {
        let stop = cx.stop_at;
        let mut c = cx.count;
        match work {
            Work::Spin => spin(stop, &mut c),
            Work::Periodic { run, period } => periodic(*run, *period, stop, &mut c),
            Work::Pingpong { run } => {
                // Pairs (0,1), (2,3), ...: each reads its own pipe and
                // writes its partner's; the even one serves first.
                let partner = cx.index ^ 1;
                let first = cx.index.is_multiple_of(2);
                self.exchange(cx.index, partner, first, *run, stop, &mut c)?
            }
            Work::WakeChain => {
                let next = (cx.index + 1) % self.pipes.len();
                let first = cx.index == 0;
                self.exchange(cx.index, next, first, Duration::ZERO, stop, &mut c)?
            }
            Work::ForkExit => fork_exit(stop, &mut c)?,
            Work::Yield => yield_loop(stop, &mut c),
            Work::Sleepy {
                run,
                min_sleep,
                max_sleep,
            } => sleepy(*run, *min_sleep, *max_sleep, cx.rng, stop, &mut c),
            Work::FanOut {
                workers,
                run,
                interval,
            } => {
                let per_ring = *workers as usize + 1;
                let word = self
                    .rings
                    .as_ref()
                    .expect("made for fan_out")
                    .word(cx.index / per_ring);
                if cx.index.is_multiple_of(per_ring) {
                    fan_out_message(word, *interval, stop, &mut c)
                } else {
                    fan_out_worker(word, *run, stop, &mut c)
                }
            }
            Work::Messaging { size } => {
                let receivers = self.pipes.len();
                if cx.index < receivers {
                    let to: Vec<i32> = self.pipes.iter().map(|p| p.1.as_raw_fd()).collect();
                    send_messages(&to, *size as usize, stop, &mut c)?
                } else {
                    let from = self.pipes[cx.index - receivers].0.as_raw_fd();
                    receive_messages(from, *size as usize, stop, &mut c)?
                }
            }
            Work::Jobs {
                min_run,
                max_run,
                min_gap,
                max_gap,
            } => jobs(
                (*min_run, *max_run),
                (*min_gap, *max_gap),
                cx.rng,
                stop,
                &mut c,
            )?,
            Work::Timers { interval } => timers(*interval, stop, &mut c)?,
            Work::Workqueue { interval } => workqueue(*interval, stop, &mut c)?,
            Work::BlockIo { size } => {
                let scratch = self.scratch.as_ref().expect("made for block_io");
                block_io(scratch, *size as u64, cx.rng, stop, &mut c)?
            }
            Work::Replay {
                run,
                sleep,
                run_mean,
                sleep_mean,
                ..
            } => {
                let link = self.mailbox.as_ref().map(|(m, c)| Link {
                    mailbox: m,
                    couplings: c,
                    group: cx.group,
                    index: cx.index as u32,
                });
                let run = Distribution::new(run, *run_mean);
                let sleep = Distribution::new(sleep, *sleep_mean);
                replay(run, sleep, cx.rng, stop, &mut c, link.as_ref())
            }
            Work::Command { .. } => {
                anyhow::bail!("a command group's tasks run through workload::app")
            }
        }
        Ok(c)
    }

    /// Reads a token from pipe `me`, writes it to pipe `to`; `first` sends
    /// the first token, `run` of CPU time is burnt before each is passed on.
    /// Counts tokens received.
    fn exchange(
        &self,
        me: usize,
        to: usize,
        first: bool,
        run: Duration,
        stop_at: u64,
        count: &mut Count,
    ) -> Result<()> {
        let rfd = self.pipes[me].0.as_raw_fd();
        let wfd = self.pipes[to].1.as_raw_fd();
        let token = [1u8];
        if first {
            write_byte(wfd, &token)?;
        }
        let mut buf = [0u8; 1];
        while now_ns() < stop_at {
            // Wait for the token, but look at the clock at least every
            // 20 ms so the stop time is kept when the partner has stopped.
            if !ready(rfd, libc::POLLIN) {
                continue;
            }
            // SAFETY: reading one byte into a one-byte buffer.
            if unsafe { libc::read(rfd, buf.as_mut_ptr().cast(), 1) } != 1 {
                continue;
            }
            let now = now_ns();
            count.hit_at(now);
            if now >= stop_at {
                break;
            }
            if !run.is_zero() {
                burn_cpu(run, stop_at);
            }
            write_byte(wfd, &token)?;
        }
        Ok(())
    }
}

fn write_byte(fd: i32, b: &[u8; 1]) -> Result<()> {
    // SAFETY: writing one byte from a one-byte buffer.
    if unsafe { libc::write(fd, b.as_ptr().cast(), 1) } != 1 {
        return Err(std::io::Error::last_os_error()).context("writing the token");
    }
    Ok(())
}

/// One unit of CPU work, about a few microseconds; the result is used so
/// the compiler keeps the loop.
fn burn() -> u64 {
    let mut x = 0x1234_5678u64;
    for _ in 0..256 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    std::hint::black_box(x)
}

fn spin(stop_at: u64, count: &mut Count) {
    loop {
        let now = now_ns();
        if now >= stop_at {
            break;
        }
        burn();
        count.hit_at(now);
    }
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Burns `d` of this thread's own CPU time (not wall time: being
/// preempted does not shorten the work), or until `stop_at`.
fn burn_cpu(d: Duration, stop_at: u64) {
    burn_cpu_until(thread_cpu_ns() + d.as_nanos() as u64, stop_at);
}

/// Burns CPU until this thread's CPU time reaches `until` ns (at once
/// when it has).
fn burn_cpu_until(until: u64, stop_at: u64) {
    while thread_cpu_ns() < until && now_ns() < stop_at {
        burn();
    }
}

fn periodic(run: Duration, period: Duration, stop_at: u64, count: &mut Count) {
    every_period(period, stop_at, count, || burn_cpu(run, stop_at));
}

/// Runs `body` at the start of every `period` until `stop_at`, counting
/// each round; a round that overruns skips the periods already gone, as
/// rt-app does.
fn every_period(period: Duration, stop_at: u64, count: &mut Count, mut body: impl FnMut()) {
    let period = period.as_nanos() as u64;
    let mut next = now_ns();
    while next < stop_at {
        body();
        count.hit();
        next += period;
        let now = now_ns();
        if next < now {
            next += (now - next).div_ceil(period) * period;
        }
        if next >= stop_at {
            break;
        }
        sleep_until(next);
    }
}

/// Waits on a periodic timerfd firing every `interval`, counting wake-ups.
fn timers(interval: Duration, stop_at: u64, count: &mut Count) -> Result<()> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscall; the descriptor is owned below.
    let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("timerfd_create(CLOCK_MONOTONIC)");
    }
    // SAFETY: a fresh descriptor, owned from here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let ts = libc::timespec {
        tv_sec: interval.as_secs() as libc::time_t,
        tv_nsec: interval.subsec_nanos() as libc::c_long,
    };
    let spec = libc::itimerspec {
        it_interval: ts,
        it_value: ts,
    };
    // SAFETY: a valid timerfd and itimerspec; the old value is not wanted.
    if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("timerfd_settime");
    }
    let mut expirations = 0u64;
    while now_ns() < stop_at {
        // Looks at the clock at least every 20 ms: the stop is kept
        // whatever the interval.
        if !ready(fd.as_raw_fd(), libc::POLLIN) {
            continue;
        }
        // SAFETY: reading the 8-byte expiry count into a u64.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                (&mut expirations as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        if n == 8 {
            count.hit();
        }
    }
    Ok(())
}

/// The file whose write runs a work item on every CPU's kworker.
const STAT_REFRESH: &str = "/proc/sys/vm/stat_refresh";

/// Writes [`STAT_REFRESH`] and sleeps `interval`, again and again, counting
/// rounds.
fn workqueue(interval: Duration, stop_at: u64, count: &mut Count) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(STAT_REFRESH)
        .with_context(|| format!("opening {STAT_REFRESH} for writing (root only)"))?;
    while now_ns() < stop_at {
        // The write returns when a kworker has run the item on every
        // online CPU.
        f.write_all(b"1")
            .with_context(|| format!("writing {STAT_REFRESH}"))?;
        count.hit();
        if !interval.is_zero() {
            sleep_until((now_ns() + interval.as_nanos() as u64).min(stop_at));
        }
    }
    Ok(())
}

/// A buffer aligned for O_DIRECT (4096 bytes, above any logical block size
/// the scratch device has).
struct Aligned {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    fn new(size: usize) -> Aligned {
        let layout = std::alloc::Layout::from_size_align(size, 4096).expect("a valid size");
        // SAFETY: a non-zero size (validated: at least 512).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Aligned { ptr, layout }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in new() with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

/// Writes `size` bytes at one random offset of the scratch and reads
/// `size` at another, with O_DIRECT, counting rounds.
fn block_io(
    scratch: &Scratch,
    size: u64,
    rng: &mut Rng,
    stop_at: u64,
    count: &mut Count,
) -> Result<()> {
    let buf = Aligned::new(size as usize);
    let slots = (scratch.len / size).max(1);
    let fd = scratch.file.as_raw_fd();
    while now_ns() < stop_at {
        for write in [true, false] {
            let off = (rng.next_u64() % slots) * size;
            // SAFETY: `buf` holds `size` bytes; pwrite/pread stay inside it.
            let n = unsafe {
                if write {
                    libc::pwrite(fd, buf.ptr.cast(), size as usize, off as libc::off_t)
                } else {
                    libc::pread(fd, buf.ptr.cast(), size as usize, off as libc::off_t)
                }
            };
            if n != size as isize {
                let e = std::io::Error::last_os_error();
                let fix = if e.raw_os_error() == Some(libc::EINVAL) {
                    "\n  fix: a block_io size that is a multiple of the device's direct-I/O alignment (4096 is safe)"
                } else {
                    ""
                };
                anyhow::bail!(
                    "block_io: {} of {size} bytes at {off} on {} gave {n}: {e}{fix}",
                    if write { "a write" } else { "a read" },
                    scratch.what
                );
            }
        }
        count.hit();
    }
    Ok(())
}

fn yield_loop(stop_at: u64, count: &mut Count) {
    loop {
        let now = now_ns();
        if now >= stop_at {
            break;
        }
        // SAFETY: no arguments.
        unsafe { libc::sched_yield() };
        count.hit_at(now);
    }
}

fn sleepy(
    run: Duration,
    min: Duration,
    max: Duration,
    rng: &mut Rng,
    stop_at: u64,
    count: &mut Count,
) {
    while now_ns() < stop_at {
        burn_cpu(run, stop_at);
        count.hit();
        let wake = now_ns() + rng.between(min, max).as_nanos() as u64;
        sleep_until(wake.min(stop_at));
    }
}

/// Recorded behaviour: a burst of CPU time drawn from `run`, a sleep
/// drawn from `sleep`, counting bursts.
fn replay(
    run: Distribution,
    sleep: Distribution,
    rng: &mut Rng,
    stop_at: u64,
    count: &mut Count,
    link: Option<&Link>,
) {
    // Whom to wake and whose wakeup to wait for: a stream of its own, so
    // the bursts and sleeps drawn are the same with couplings or without.
    let mut coin = link.map(|l| Rng::for_thread(!l.couplings.seed, l.group, l.index));
    if let Some(l) = link {
        // Every waker counted, 0 or not, in `wakers`' order.
        count.coupled.resize(l.couplings.wakers.len(), [0, 0]);
    }
    let mut toss = || coin.as_mut().map_or(1.0, Rng::unit);
    // In a pool whose tasks wake each other: whether this burst began
    // with one of the pool's wakeups in flight, to be passed on at its
    // end. The first `in_flight` tasks start with one.
    let in_flight = link.map_or(0, |l| {
        l.couplings
            .wakees
            .iter()
            .find(|w| w.group == l.group)
            .map_or(0, |w| w.in_flight)
    });
    let mut holding = link.is_some_and(|l| l.index < in_flight);
    let mut late = Lateness::new();
    // A burst is the CPU time the task ran between two sleeps, as the
    // recorder measured it: what the kernel did for it since the last
    // burst's burning ended (its sleep, its wakeup, the wakeups it made)
    // is part of the drawn burst, not added to it.
    let mut since = thread_cpu_ns();
    while now_ns() < stop_at {
        burn_cpu_until(since + run.draw(rng).as_nanos() as u64, stop_at);
        since = thread_cpu_ns();
        count.hit();
        if let Some(l) = link {
            for w in &l.couplings.wakees {
                let due = if w.in_flight > 0 {
                    std::mem::take(&mut holding)
                } else {
                    toss() < w.per_burst
                };
                if due {
                    l.mailbox.post(w.word, w.threads);
                }
            }
        }
        let wake = now_ns() + sleep.draw(rng).as_nanos() as u64;
        let by = link.and_then(|l| {
            let u = toss();
            let mut acc = 0.0;
            l.couplings.wakers.iter().enumerate().find_map(|(k, w)| {
                acc += w.share;
                (u < acc).then_some((l, k, w))
            })
        });
        match by {
            Some((l, k, w)) => {
                let deadline = (now_ns() + w.grace_ns).min(stop_at);
                let woken = l.mailbox.take(w.word, deadline);
                holding = woken && w.group == l.group && in_flight > 0;
                count.coupled_at(k, woken, now_ns());
            }
            None => late.sleep_until(wake, stop_at),
        }
    }
}

/// A `replay` task's timed sleeps, aimed early by how late its own
/// timed sleeps ended: the least of the last [`LATENESS_KEPT`] times past
/// their aim at which the task ran again (the least, because that time
/// is the timer's lateness plus the task's wait to run once woken, which
/// varies with the load and which the recorder keeps apart as the
/// wakeup's delay; reading the wait itself from schedstat cost two
/// system calls a sleep, which under TCG lengthened the bursts more than
/// it helped the sleeps). So a sleep, blocked to woken as `record`
/// measures it, is the drawn one where timers fire late (a TCG guest:
/// some 0.4 ms, which made a build's half-millisecond sleeps replay 1.8
/// times longer); on metal the lateness is microseconds.
struct Lateness {
    /// The last sleeps' times past their aim, ns (0: none yet).
    past: [u64; LATENESS_KEPT],
    /// Where the next goes in `past`.
    next: usize,
    /// How many `past` holds.
    kept: usize,
}

/// Timed sleeps whose lateness is kept: a few, so the least of them is
/// one with little wait to run, and a change of lateness is followed.
const LATENESS_KEPT: usize = 8;

impl Lateness {
    fn new() -> Lateness {
        Lateness {
            past: [0; LATENESS_KEPT],
            next: 0,
            kept: 0,
        }
    }

    /// The lateness to aim early by, ns: the least kept (0 for none).
    fn ns(&self) -> u64 {
        self.past[..self.kept].iter().copied().min().unwrap_or(0)
    }

    /// Sleeps until `wake` (ns, CLOCK_MONOTONIC), at most `stop_at`,
    /// aimed early by the lateness so far, and learns this sleep's.
    fn sleep_until(&mut self, wake: u64, stop_at: u64) {
        let now = now_ns();
        let aim = self.aim(wake, now, stop_at);
        sleep_until(aim);
        self.learn(wake, now, stop_at, now_ns());
    }

    /// Where a sleep to `wake` begun at `now` aims: early by the
    /// lateness, not before `now` nor past `stop_at` (ns).
    fn aim(&self, wake: u64, now: u64, stop_at: u64) -> u64 {
        wake.saturating_sub(self.ns()).max(now).min(stop_at)
    }

    /// Learns from a sleep to `wake` begun at `now` that ended at
    /// `woke`: how late it was past its aim. A sleep cut by the stop, one
    /// aimed at once (shorter than the lateness: it may not have slept),
    /// or an outlier past 50 ms (the host stopped the VM) teaches nothing.
    fn learn(&mut self, wake: u64, now: u64, stop_at: u64, woke: u64) {
        let early = wake.saturating_sub(self.ns());
        let aim = self.aim(wake, now, stop_at);
        let late = woke.saturating_sub(aim);
        if aim == early && aim > now && late < 50_000_000 {
            self.past[self.next] = late;
            self.next = (self.next + 1) % LATENESS_KEPT;
            self.kept = (self.kept + 1).min(LATENESS_KEPT);
        }
    }
}

/// A distribution given as quantiles at evenly spaced ranks (least
/// first, at least one), as a `replay` group gives it: a draw picks a
/// rank uniform in [0, 1] and interpolates linearly between its
/// neighbouring quantiles, except in the top interval (between the last
/// two) when a mean is given: there a draw is `lo + (hi - lo) u^k`, `u`
/// uniform, `k` the power that makes the distribution's mean the one
/// given (the mean of `u^k` is `1 / (k + 1)`), as near as the top
/// interval allows. What a `replay` thread draws, a burst then a sleep,
/// from [`super::Rng::for_thread`].
#[derive(Debug, Clone, Copy)]
pub struct Distribution<'a> {
    quantiles: &'a [Duration],
    /// The top interval's power `k`: 1 is uniform.
    power: f64,
}

impl<'a> Distribution<'a> {
    /// The distribution of `quantiles`, its top interval shaped to `mean`
    /// when given (see the type).
    pub fn new(quantiles: &'a [Duration], mean: Option<Duration>) -> Distribution<'a> {
        let mut power = 1.0;
        let n = quantiles.len();
        if let (Some(mean), true) = (mean, n >= 2) {
            let ns = |i: usize| quantiles[i].as_nanos() as f64;
            let (lo, hi) = (ns(n - 2), ns(n - 1));
            let below: f64 = (0..n - 2).map(|i| (ns(i) + ns(i + 1)) / 2.0).sum();
            // The top interval's mean that gives the whole this mean.
            let top = mean.as_nanos() as f64 * (n - 1) as f64 - below;
            if hi > lo {
                let t = ((top - lo) / (hi - lo)).clamp(1e-6, 1.0 - 1e-6);
                power = 1.0 / t - 1.0;
            }
        }
        Distribution { quantiles, power }
    }

    /// One draw.
    pub fn draw(&self, rng: &mut Rng) -> Duration {
        let q = self.quantiles;
        let n = q.len();
        if n < 2 {
            return q.first().copied().unwrap_or_default();
        }
        let pos = rng.unit() * (n - 1) as f64;
        let i = (pos as usize).min(n - 2);
        let mut frac = pos - i as f64;
        if i == n - 2 {
            frac = frac.powf(self.power);
        }
        let (lo, hi) = (q[i].as_nanos() as f64, q[i + 1].as_nanos() as f64);
        Duration::from_nanos((lo + (hi - lo) * frac).round() as u64)
    }

    /// The largest draw (the last quantile; 0 for none).
    pub fn max(&self) -> Duration {
        self.quantiles.last().copied().unwrap_or_default()
    }

    /// The draws' mean, ns: the intervals' means, averaged.
    pub fn mean(&self) -> f64 {
        let q = self.quantiles;
        match q {
            [] => 0.0,
            [one] => one.as_nanos() as f64,
            _ => {
                let n = q.len();
                let ns = |i: usize| q[i].as_nanos() as f64;
                let below: f64 = (0..n - 2).map(|i| (ns(i) + ns(i + 1)) / 2.0).sum();
                let top = ns(n - 2) + (ns(n - 1) - ns(n - 2)) / (self.power + 1.0);
                (below + top) / (n - 1) as f64
            }
        }
    }
}

/// A fan-out ring's message task: every `interval`, a new round in the
/// word and every worker woken.
fn fan_out_message(
    word: &std::sync::atomic::AtomicU32,
    interval: Duration,
    stop_at: u64,
    count: &mut Count,
) {
    use std::sync::atomic::Ordering;
    every_period(interval, stop_at, count, || {
        word.fetch_add(1, Ordering::SeqCst);
        futex_wake_all(word);
    });
    // The workers see the stop by their timeout.
}

/// A fan-out worker: waits for a new round, runs `run` of CPU time, counts
/// the round.
fn fan_out_worker(
    word: &std::sync::atomic::AtomicU32,
    run: Duration,
    stop_at: u64,
    count: &mut Count,
) {
    use std::sync::atomic::Ordering;
    let mut seen = word.load(Ordering::SeqCst);
    while now_ns() < stop_at {
        futex_wait(word, seen, Duration::from_millis(20));
        let now = word.load(Ordering::SeqCst);
        if now == seen {
            continue;
        }
        seen = now;
        burn_cpu(run, stop_at);
        count.hit();
    }
}

/// Waits until `fd` is ready for `events`, at most 20 ms (so the stop time
/// is kept when the other side has stopped): true if it is.
fn ready(fd: i32, events: i16) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, 20) > 0 }
}

/// A messaging sender: a message to each receiver in turn.
fn send_messages(to: &[i32], size: usize, stop_at: u64, count: &mut Count) -> Result<()> {
    let msg = vec![0x5au8; size];
    'run: while now_ns() < stop_at {
        for fd in to {
            let mut sent = 0;
            while sent < size {
                if now_ns() >= stop_at {
                    break 'run;
                }
                if !ready(*fd, libc::POLLOUT) {
                    continue;
                }
                // SAFETY: writing from a buffer of `size` bytes.
                let n = unsafe {
                    libc::send(
                        *fd,
                        msg[sent..].as_ptr().cast(),
                        size - sent,
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if n > 0 {
                    sent += n as usize;
                } else if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::Interrupted
                    {
                        return Err(e).context("sending a message");
                    }
                }
            }
            count.hit();
        }
    }
    Ok(())
}

/// A messaging receiver: reads whole messages from its socket.
fn receive_messages(fd: i32, size: usize, stop_at: u64, count: &mut Count) -> Result<()> {
    let mut buf = vec![0u8; size * 16];
    let mut partial = 0usize;
    while now_ns() < stop_at {
        if !ready(fd, libc::POLLIN) {
            continue;
        }
        // SAFETY: reading into a buffer of its own length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n <= 0 {
            continue;
        }
        partial += n as usize;
        let now = now_ns();
        while partial >= size {
            partial -= size;
            count.hit_at(now);
        }
    }
    Ok(())
}

/// Build-like bursts: a random gap, then a child process burning a random
/// CPU time.
fn jobs(
    run: (Duration, Duration),
    gap: (Duration, Duration),
    rng: &mut Rng,
    stop_at: u64,
    count: &mut Count,
) -> Result<()> {
    while now_ns() < stop_at {
        let wake = now_ns() + rng.between(gap.0, gap.1).as_nanos() as u64;
        sleep_until(wake.min(stop_at));
        if now_ns() >= stop_at {
            break;
        }
        let work = rng.between(run.0, run.1);
        // The child burns CPU: clock_gettime and arithmetic.
        fork_and_wait(|| burn_cpu(work, stop_at)).context("fork() of a job")?;
        count.hit();
    }
    Ok(())
}

fn fork_exit(stop_at: u64, count: &mut Count) -> Result<()> {
    while now_ns() < stop_at {
        fork_and_wait(|| {}).context("fork()")?;
        count.hit();
    }
    Ok(())
}

/// Forks a child that runs `child` and exits, and waits for it. `child`
/// must take no lock another thread may hold (the process may have
/// several): plain computation and system calls only.
fn fork_and_wait(child: impl FnOnce()) -> std::io::Result<()> {
    // SAFETY: the child runs only `child` (no locks, by the contract
    // above) and _exit, which is async-signal-safe, so forking from a
    // multithreaded process is sound here.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        child();
        unsafe { libc::_exit(0) };
    }
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut status = 0;
    // SAFETY: waiting for the child we just forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::{Couplings, Mailbox, Wakee, Waker};

    fn couplings(mailbox: &Mailbox, wakers: Vec<Waker>, wakees: Vec<Wakee>) -> Couplings {
        Couplings {
            seed: 1,
            mailbox: mailbox.path(),
            words: 4,
            wakers,
            wakees,
        }
    }

    /// Task `index` of group `group` replaying `run` and `sleep`
    /// quantiles (seed 1) with its part in `couplings`' mailbox, from
    /// `now` to `stop` (ns); its count.
    fn replay_linked(
        mailbox: &MailboxMap,
        couplings: &Couplings,
        (group, index): (u32, u32),
        (run, sleep): (&[Duration], &[Duration]),
        (now, stop): (u64, u64),
    ) -> Count {
        let link = Link {
            mailbox,
            couplings,
            group,
            index,
        };
        let mut count = Count::new(now, stop);
        let mut rng = Rng::for_thread(1, group, index);
        replay(
            Distribution::new(run, None),
            Distribution::new(sleep, None),
            &mut rng,
            stop,
            &mut count,
            Some(&link),
        );
        count
    }

    /// A task of scope `sc` taking from word 1 of `map` (for 5 s at
    /// most), once it waits there.
    fn waiting_taker<'s, 'e>(
        sc: &'s std::thread::Scope<'s, 'e>,
        map: &'e MailboxMap,
    ) -> std::thread::ScopedJoinHandle<'s, bool> {
        use std::sync::atomic::Ordering::SeqCst;
        let taker = sc.spawn(move || map.take(1, now_ns() + 5_000_000_000));
        while waiting(map.word(1).load(SeqCst)) != 1 {
            std::hint::spin_loop();
        }
        taker
    }

    /// A mailbox word is a counting semaphore: a wakeup made with nobody
    /// waiting is kept (up to the most allowed) and taken at once by the
    /// next taker, without sleeping; a waiting taker is woken by a
    /// wakeup on its word, not another's; unwoken, a taker is back at
    /// its deadline and says so.
    #[test]
    fn a_mailbox_word_keeps_wakeups_until_they_are_taken() {
        use std::sync::atomic::Ordering::SeqCst;
        let file = Mailbox::create(4).unwrap();
        let map = MailboxMap::open(&couplings(&file, vec![], vec![])).unwrap();
        let ms = 1_000_000;
        assert!(map.post(1, 2) && map.post(1, 2), "nobody waits: kept");
        assert!(!map.post(1, 2), "two kept already: dropped");
        let start = now_ns();
        assert!(map.take(1, start + 5_000 * ms) && map.take(1, start + 5_000 * ms));
        assert!(now_ns() - start < 1_000 * ms, "taken without waiting");
        std::thread::scope(|sc| {
            let taker = waiting_taker(sc, &map);
            // A wakeup on another word leaves it waiting.
            assert!(map.post(2, 1));
            assert_eq!(waiting(map.word(1).load(SeqCst)), 1, "still waiting");
            assert!(map.post(1, 1));
            assert!(taker.join().unwrap(), "woken on word 1");
        });
        // A wakeup handed to a waiting task is its: the task that made
        // it, coming to wait at once, does not take it back.
        std::thread::scope(|sc| {
            let taker = waiting_taker(sc, &map);
            assert!(map.post(1, 1));
            assert!(!map.take(1, now_ns() + 1_000 * ms), "the taker's");
            assert!(taker.join().unwrap());
        });
        assert_eq!(map.word(1).load(SeqCst) >> 16, 0, "taken, nobody waits");
        assert_eq!(kept(map.word(2).load(SeqCst)), 1, "still kept");
        // Nobody wakes it: back at its deadline, missed.
        let start = now_ns();
        assert!(!map.take(1, start + 20 * ms));
        assert!(now_ns() - start >= 20 * ms);
        // Another mapping sees the same words (the file, not a copy).
        let again = MailboxMap::open(&couplings(&file, vec![], vec![])).unwrap();
        assert_eq!(kept(again.word(2).load(SeqCst)), 1);
    }

    /// A server woken by a client's task for every sleep, the client
    /// waking it at each burst: the server's sleeps end with the
    /// client's wakeups, counted apart, and its bursts follow the
    /// client's.
    #[test]
    fn a_coupled_replay_task_is_woken_by_its_waking_group() {
        let file = Mailbox::create(4).unwrap();
        let waker = Waker {
            group: 1,
            name: "client".into(),
            share: 1.0,
            grace_ns: 200_000_000,
            word: 1,
        };
        let wakee = Wakee {
            group: 0,
            threads: 1,
            per_burst: 1.0,
            in_flight: 0,
            word: 1,
        };
        let (server, client) = (
            couplings(&file, vec![waker], vec![]),
            couplings(&file, vec![], vec![wakee]),
        );
        let maps = [&server, &client].map(|c| MailboxMap::open(c).unwrap());
        let us = Duration::from_micros;
        let now = now_ns();
        let stop = now + 400_000_000;
        let counts: Vec<Count> = std::thread::scope(|sc| {
            let tasks: Vec<_> = [(&maps[0], &server, 0u32), (&maps[1], &client, 1u32)]
                .into_iter()
                .map(|(m, c, group)| {
                    sc.spawn(move || {
                        // The server's own sleeps (10 to 20 ms) are
                        // never used: the client ends them sooner.
                        let sleep = [[us(10_000), us(20_000)], [us(1000), us(3000)]];
                        let run = [us(100), us(200)];
                        replay_linked(
                            m,
                            c,
                            (group, 0),
                            (&run, &sleep[group as usize]),
                            (now, stop),
                        )
                    })
                })
                .collect();
            tasks.into_iter().map(|t| t.join().unwrap()).collect()
        });
        eprintln!("{counts:?}");
        let [woken, missed] = counts[0].coupled[0];
        // The client's cycle is about 2.15 ms: some 180 in 400 ms, each
        // waking the server if it waits.
        assert!(woken >= 20 && missed * 10 <= woken, "{counts:?}");
        // Every sleep is coupled; the last, cut by the stop, is not counted.
        let total = counts[0].total;
        assert!(
            (total - 1..=total).contains(&(woken + missed)),
            "{counts:?}"
        );
        // Far more bursts than its own 10 to 20 ms sleeps allow (27 at most).
        assert!(total > 40, "{counts:?}");
        assert!(counts[1].coupled.is_empty(), "{counts:?}");
    }

    /// A pool of 3 tasks that wake each other for every sleep, with
    /// `in_flight` wakeups: it keeps going (every sleep ended by the
    /// pool, none missed), and with one in flight its 1 ms bursts run
    /// one at a time after the first three (a burst is CPU time, so at
    /// most one a millisecond of wall time) while the other tasks sleep,
    /// where with three in flight no task sleeps.
    #[test]
    fn a_pool_that_wakes_itself_keeps_its_wakeups_in_flight() {
        let pool = |in_flight: u32| {
            let file = Mailbox::create(4).unwrap();
            let c = couplings(
                &file,
                vec![Waker {
                    group: 0,
                    name: "pool".into(),
                    share: 1.0,
                    grace_ns: 2_000_000_000,
                    word: 0,
                }],
                vec![Wakee {
                    group: 0,
                    threads: 3,
                    per_burst: 1.0,
                    in_flight,
                    word: 0,
                }],
            );
            let map = MailboxMap::open(&c).unwrap();
            let ms = 1_000_000;
            let now = now_ns();
            let stop = now + 400 * ms;
            // This thread's CPU time and wait to run so far (schedstat).
            let schedstat = || -> u64 {
                let t = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
                t.split_whitespace()
                    .take(2)
                    .map(|v| v.parse::<u64>().unwrap())
                    .sum()
            };
            let runs: Vec<(Count, u64)> = std::thread::scope(|sc| {
                let tasks: Vec<_> = (0..3u32)
                    .map(|index| {
                        let (map, c) = (&map, &c);
                        sc.spawn(move || {
                            let ms1 = [Duration::from_millis(1); 2];
                            let (t0, r0) = (now_ns(), schedstat());
                            let count =
                                replay_linked(map, c, (0, index), (&ms1, &ms1), (now, stop));
                            // Asleep: neither running nor waiting to run.
                            let asleep = (now_ns() - t0).saturating_sub(schedstat() - r0);
                            (count, asleep)
                        })
                    })
                    .collect();
                tasks.into_iter().map(|t| t.join().unwrap()).collect()
            });
            let total: u64 = runs.iter().map(|(c, _)| c.total).sum();
            let missed: u64 = runs.iter().map(|(c, _)| c.coupled[0][1]).sum();
            let asleep = runs.iter().map(|(_, a)| *a as f64).sum::<f64>() / (3.0 * 400e6);
            (total, missed, asleep, runs)
        };
        let (one, missed, asleep_one, runs) = pool(1);
        assert_eq!(missed, 0, "{runs:?}");
        assert!((30..=403).contains(&one), "{one} bursts: {runs:?}");
        let (three, missed, asleep_three, runs) = pool(3);
        assert_eq!(missed, 0, "{runs:?}");
        eprintln!(
            "1 in flight: {one} bursts, {asleep_one:.2} of the time asleep; 3: {three}, {asleep_three:.2}"
        );
        // One in flight among three tasks: each sleeps while the others
        // hold it, about two thirds of the time; three: none sleeps.
        // Whatever else loads the machine shows as waits to run, not
        // sleep.
        assert!(asleep_one > 0.4, "{asleep_one}: {runs:?}");
        assert!(asleep_three < 0.2, "{asleep_three}: {runs:?}");
    }

    /// Lateness: a sleep that ended 400 us past its aim, and others
    /// later by a wait to run, teach an aim 400 us early (the least of
    /// the last 8); a sleep aimed at once (shorter than that), one cut by
    /// the stop, and an outlier past 50 ms teach nothing; after 8 sleeps
    /// 100 us late the old 400 us is forgotten.
    #[test]
    fn timed_sleeps_aim_early_by_the_least_of_their_last_latenesses() {
        let us = 1_000u64;
        let mut late = Lateness::new();
        assert_eq!(
            late.aim(10_000 * us, 0, u64::MAX),
            10_000 * us,
            "none learned"
        );
        // Sleeps of 10 ms from t, ending 400 us (then 700, 1000) past.
        let mut t = 0;
        for extra in [400, 700, 1000, 400] {
            let aim = late.aim(t + 10_000 * us, t, u64::MAX);
            late.learn(t + 10_000 * us, t, u64::MAX, aim + extra * us);
            t += 20_000 * us;
        }
        assert_eq!(late.ns(), 400 * us);
        assert_eq!(late.aim(t + 10_000 * us, t, u64::MAX), t + 9_600 * us);
        // Shorter than the lateness: aimed at once, learns nothing.
        assert_eq!(late.aim(t + 100 * us, t, u64::MAX), t);
        late.learn(t + 100 * us, t, u64::MAX, t + 5 * us);
        // Cut by the stop, or 60 ms late: nothing.
        late.learn(t + 10_000 * us, t, t + 1_000 * us, t + 1_000 * us);
        late.learn(t + 10_000 * us, t, u64::MAX, t + 70_000 * us);
        assert_eq!(late.ns(), 400 * us);
        for _ in 0..LATENESS_KEPT {
            t += 20_000 * us;
            let aim = late.aim(t + 10_000 * us, t, u64::MAX);
            late.learn(t + 10_000 * us, t, u64::MAX, aim + 100 * us);
        }
        assert_eq!(late.ns(), 100 * us);
    }

    /// Draws from a quantile table reproduce its quantiles: of 20 000
    /// draws from [0, 1 ms, 10 ms] (median 1 ms) about half fall below
    /// 1 ms and three quarters below 5.5 ms, none past the ends, and the
    /// same seed draws the same.
    #[test]
    fn draws_follow_the_quantiles_they_are_given() {
        let q = [
            Duration::ZERO,
            Duration::from_millis(1),
            Duration::from_millis(10),
        ];
        let mut rng = Rng::for_thread(7, 0, 0);
        let dist = Distribution::new(&q, None);
        let d: Vec<Duration> = (0..20_000).map(|_| dist.draw(&mut rng)).collect();
        let share =
            |below: Duration| d.iter().filter(|d| **d < below).count() as f64 / d.len() as f64;
        assert!((share(q[1]) - 0.5).abs() < 0.02, "{}", share(q[1]));
        let q3 = share(Duration::from_micros(5500));
        assert!((q3 - 0.75).abs() < 0.02, "{q3}");
        assert!(d.iter().all(|d| *d <= q[2]));
        let mut again = Rng::for_thread(7, 0, 0);
        assert_eq!(dist.draw(&mut again), d[0]);
        assert_eq!(Distribution::new(&q[..1], None).draw(&mut again), q[0]);
    }

    /// A heavy tail keeps its mean when the mean is given: 21 quantiles
    /// of a build's bursts (50 us to 1 ms up to the 95th percentile, 3 s
    /// at the maximum; mean 0.8 ms) drawn uniformly average 75 ms; shaped
    /// to the mean, a million draws average within 10% of 0.8 ms (the top
    /// interval's rare long draws are the noise: 2.4% one standard
    /// deviation), and 95% of them are still below the 95th percentile. A mean the top interval
    /// cannot reach is approached: all its draws at its bottom.
    #[test]
    fn a_heavy_tail_is_drawn_to_its_mean() {
        let mut q: Vec<Duration> = (0..20)
            .map(|i| Duration::from_micros(50 + 50 * i))
            .collect();
        q.push(Duration::from_secs(3));
        let uniform = Distribution::new(&q, None);
        assert!(
            (uniform.mean() / 1e6 - 75.5).abs() < 0.1,
            "{}",
            uniform.mean()
        );
        let mean = Duration::from_micros(800);
        let shaped = Distribution::new(&q, Some(mean));
        assert!((shaped.mean() - 800e3).abs() < 1.0, "{}", shaped.mean());
        let mut rng = Rng::for_thread(3, 0, 0);
        let n = 1_000_000;
        let d: Vec<f64> = (0..n)
            .map(|_| shaped.draw(&mut rng).as_nanos() as f64)
            .collect();
        let avg = d.iter().sum::<f64>() / n as f64;
        assert!((avg / 800e3 - 1.0).abs() < 0.1, "{avg}");
        let below = d.iter().filter(|v| **v < 1_000_000.0).count() as f64 / n as f64;
        assert!((below - 0.95).abs() < 0.002, "{below}");
        // Below the body's own mean (about 0.5 ms): the top at its bottom.
        let low = Distribution::new(&q, Some(Duration::from_micros(100)));
        let body = (0..19).map(|i| 75.0 + 50.0 * i as f64).sum::<f64>();
        assert!(
            (low.mean() - (body + 1000.0) / 20.0 * 1e3).abs() < 1e3,
            "{}",
            low.mean()
        );
        assert!((0..1000).all(|_| low.draw(&mut rng) <= Duration::from_millis(2)));
    }

    fn count_for(ms: u64) -> (u64, Count) {
        let now = now_ns();
        let stop = now + ms * 1_000_000;
        (stop, Count::new(now, stop))
    }

    /// A pair's turns: with `run`, each burns that much CPU time before it
    /// passes the byte back, so turns are serial and at least `run` long;
    /// without, they are system calls.
    #[test]
    fn pingpong_turns_last_their_run() {
        let turns = |run: Duration| {
            let work = Work::Pingpong { run };
            let dir = tempfile::tempdir().unwrap();
            let plan = Plan::new(&work, 2, None, dir.path(), None).unwrap();
            let (stop, _) = count_for(200);
            let counts: Vec<Count> = std::thread::scope(|sc| {
                let tasks: Vec<_> = (0..2)
                    .map(|index| {
                        let (plan, work) = (&plan, &work);
                        sc.spawn(move || {
                            let (_, count) = count_for(200);
                            let mut rng = Rng::for_thread(1, 0, index as u32);
                            let cx = Ctx {
                                index,
                                group: 0,
                                stop_at: stop,
                                count,
                                rng: &mut rng,
                            };
                            plan.run(work, cx).unwrap()
                        })
                    })
                    .collect();
                tasks.into_iter().map(|t| t.join().unwrap()).collect()
            });
            counts.iter().map(|c| c.total).sum::<u64>()
        };
        // 2 ms of CPU a turn, one turn at a time: 100 in 200 ms at most
        // (25 at least: a machine busy with a VM gives the pair half a
        // CPU or more).
        let slow = turns(Duration::from_millis(2));
        assert!((25..=101).contains(&slow), "{slow} turns");
        // At once: thousands.
        let fast = turns(Duration::ZERO);
        assert!(fast > 1_000, "{fast} turns");
    }

    #[test]
    fn timers_wake_at_their_interval() {
        let (stop, mut c) = count_for(200);
        timers(Duration::from_millis(2), stop, &mut c).unwrap();
        // 100 expiries in 200 ms (a one-shot timer would give 1); a
        // wake-up that finds several counts once, so a loaded machine sees
        // fewer, never more.
        assert!((5..=101).contains(&c.total), "{c:?}");
    }

    #[test]
    fn block_io_writes_and_reads_a_scratch_file_with_o_direct() {
        let dir = tempfile::tempdir().unwrap();
        let work = Work::BlockIo { size: 4096 };
        let plan = Plan::new(&work, 1, None, dir.path(), None).unwrap();
        let scratch = plan.scratch.as_ref().unwrap();
        assert_eq!(scratch.len, SCRATCH_BYTES);
        let (stop, mut c) = count_for(300);
        block_io(scratch, 4096, &mut Rng::for_thread(1, 0, 0), stop, &mut c).unwrap();
        assert!(c.total > 0, "{c:?}");
        // Unnamed: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Sparse: only what was written takes space.
        use std::os::unix::fs::MetadataExt;
        let m = scratch.file.metadata().unwrap();
        assert!(
            m.blocks() * 512 <= c.total * 4096 + (1 << 20),
            "{} blocks",
            m.blocks()
        );
    }

    #[test]
    fn workqueue_rounds_go_through_stat_refresh() {
        // Root only, as in the guest; the tests run as root (CI's set-up).
        // That each round waits for a kworker on every CPU is the kernel's
        // (mm/vmstat.c); the VM test sees the rounds' rate drop under a
        // scheduler that keeps kworkers waiting.
        let (stop, mut c) = count_for(100);
        workqueue(Duration::from_millis(5), stop, &mut c).unwrap();
        assert!(c.total > 0, "{c:?}");
    }
}
