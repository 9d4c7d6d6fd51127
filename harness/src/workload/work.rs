//! The work kinds: what one thread does between its start and stop times,
//! returning how many iterations it completed.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{sleep_until, Rng};
use crate::probe::now_ns;
use crate::scenario::Work;

/// Iterations done: in all, and inside the measurement window.
#[derive(Debug, Default, Clone, Copy)]
pub struct Count {
    pub total: u64,
    pub window: u64,
    from: u64,
    to: u64,
}

impl Count {
    pub fn new(from: u64, to: u64) -> Count {
        Count {
            total: 0,
            window: 0,
            from,
            to,
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
    /// CLOCK_MONOTONIC ns at which to stop.
    pub stop_at: u64,
    /// Where its iterations are counted.
    pub count: Count,
    pub rng: &'a mut Rng,
    pub output_dir: &'a Path,
    pub group: &'a str,
}

/// Resources shared by a group's threads (the pipes of pingpong pairs and
/// wake chains), created before any thread starts.
pub struct Plan {
    /// `pipes[i]` = (read end, write end); thread i reads `pipes[i]`.
    pipes: Vec<(OwnedFd, OwnedFd)>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = std::io::pipe().context("pipe()")?;
    Ok((r.into(), w.into()))
}

impl Plan {
    pub fn new(work: &Work, threads: usize) -> Result<Plan> {
        let pipes = match work {
            Work::Pingpong | Work::WakeChain => {
                (0..threads).map(|_| pipe()).collect::<Result<_>>()?
            }
            _ => Vec::new(),
        };
        Ok(Plan { pipes })
    }

    pub fn run(&self, work: &Work, mut cx: Ctx) -> Result<Count> {
        let stop = cx.stop_at;
        let mut c = cx.count;
        match work {
            Work::Spin => spin(stop, &mut c),
            Work::Periodic { run, period } => periodic(*run, *period, stop, &mut c),
            Work::Pingpong => {
                // Pairs (0,1), (2,3), ...: each reads its own pipe and
                // writes its partner's; the even one serves first.
                let partner = cx.index ^ 1;
                self.exchange(cx.index, partner, cx.index.is_multiple_of(2), stop, &mut c)?
            }
            Work::WakeChain => {
                let next = (cx.index + 1) % self.pipes.len();
                self.exchange(cx.index, next, cx.index == 0, stop, &mut c)?
            }
            Work::ForkExit => fork_exit(stop, &mut c)?,
            Work::Yield => yield_loop(stop, &mut c),
            Work::Sleepy {
                run,
                min_sleep,
                max_sleep,
            } => sleepy(*run, *min_sleep, *max_sleep, cx.rng, stop, &mut c),
            Work::Command { argv } => command(argv, &mut cx)?,
        }
        Ok(c)
    }

    /// Reads a token from pipe `me`, writes it to pipe `to`; `first` sends
    /// the first token. Counts tokens received.
    fn exchange(
        &self,
        me: usize,
        to: usize,
        first: bool,
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
            let mut pfd = libc::pollfd {
                fd: rfd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut pfd, 1, 20) };
            if ready <= 0 {
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
    let until = thread_cpu_ns() + d.as_nanos() as u64;
    while thread_cpu_ns() < until && now_ns() < stop_at {
        burn();
    }
}

fn periodic(run: Duration, period: Duration, stop_at: u64, count: &mut Count) {
    let period = period.as_nanos() as u64;
    let mut next = now_ns();
    while next < stop_at {
        burn_cpu(run, stop_at);
        count.hit();
        next += period;
        let now = now_ns();
        if next < now {
            // Overran: skip the periods already gone, as rt-app does.
            next += (now - next).div_ceil(period) * period;
        }
        if next >= stop_at {
            break;
        }
        sleep_until(next);
    }
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

fn fork_exit(stop_at: u64, count: &mut Count) -> Result<()> {
    while now_ns() < stop_at {
        // SAFETY: the child only calls _exit, which is async-signal-safe,
        // so forking from a multithreaded process is sound here.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe { libc::_exit(0) };
        }
        if pid < 0 {
            return Err(std::io::Error::last_os_error()).context("fork()");
        }
        let mut status = 0;
        // SAFETY: waiting for the child we just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        count.hit();
    }
    Ok(())
}

/// Runs the program until `stop_at` (SIGTERM, then SIGKILL after 1 s),
/// its output in `OUTPUT_DIR/GROUP-INDEX.out`. Not counted: 0 iterations.
fn command(argv: &[String], cx: &mut Ctx) -> Result<()> {
    let (program, args) = argv.split_first().context("empty command")?;
    let out_path = cx.output_dir.join(format!("{}-{}.out", cx.group, cx.index));
    let out = std::fs::File::create(&out_path)
        .with_context(|| format!("creating {}", out_path.display()))?;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if now_ns() >= cx.stop_at {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let grace = now_ns() + 1_000_000_000;
            while child.try_wait()?.is_none() && now_ns() < grace {
                sleep_until(now_ns() + 10_000_000);
            }
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        sleep_until((now_ns() + 10_000_000).min(cx.stop_at));
    }
    Ok(())
}
