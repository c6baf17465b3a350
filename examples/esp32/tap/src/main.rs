//! The ESP32 camera app on a PC: the firmware's server (routes, counters, layer stack,
//! accept loops) on embassy-net 0.9 over a Linux TAP device, so real clients (a
//! browser, curl, wrk) meet the same smoltcp and the same code as on the chip.
//!
//! Only the network differs from the firmware: a TAP device with a static address
//! instead of Wi-Fi and DHCP. `--server` picks which server serves the app: the
//! firmware's picoserve (the default), the hand-written accept loop or edge-http, each
//! layered or (`--unlayered`) not; see camera-app's `server`, `hand_written` and `edge`.
//!
//! The TAP must exist and be up before the binary starts, and creating one needs root
//! (`CAP_NET_ADMIN`); `tests/real_network.sh` does it inside a network namespace:
//!
//! ```text
//! ip tuntap add name tap0 mode tap && ip link set tap0 up
//! ip addr add 192.168.69.1/24 dev tap0        # the PC's side of the link
//! camera-tap --tap tap0 --address 192.168.69.2/24
//! curl http://192.168.69.2/stats
//! ```
// picoserve's router and response types nest deeply; the HTTP task's future needs more
// than the default 128 levels to lay out.
#![recursion_limit = "256"]

use std::net::Ipv4Addr;

use camera_app::{edge, hand_written, server, stats};
use embassy_executor::Spawner;
use embassy_net::{Ipv4Cidr, Runner, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use embassy_time::{Duration, Timer};
use log::info;
use static_cell::StaticCell;
use tcp_layers::{limit::StackServices, profile};

/// The most HTTP sockets a chip profile has (the ESP32-S3's 8): `StackResources` is
/// sized for it, whatever profile runs.
const STACK_SOCKETS: usize = 8;

/// One static per chip profile: the socket count is a const generic, chosen at start.
static ESP32_S3: server::Resources<8> =
    server::Resources::new(profile::ESP32_S3.fits_stack(STACK_SOCKETS, StackServices::None));
static ESP32_C6: server::Resources<6> =
    server::Resources::new(profile::ESP32_C6.fits_stack(STACK_SOCKETS, StackServices::None));
static ESP32: server::Resources<6> =
    server::Resources::new(profile::ESP32.fits_stack(STACK_SOCKETS, StackServices::None));
static ESP32_C3: server::Resources<4> =
    server::Resources::new(profile::ESP32_C3.fits_stack(STACK_SOCKETS, StackServices::None));

/// The chip whose socket count and budget the server runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chip {
    Esp32,
    Esp32S3,
    Esp32C3,
    Esp32C6,
}

impl Chip {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "esp32" => Some(Self::Esp32),
            "esp32s3" => Some(Self::Esp32S3),
            "esp32c3" => Some(Self::Esp32C3),
            "esp32c6" => Some(Self::Esp32C6),
            _ => None,
        }
    }

    fn sockets(self) -> usize {
        match self {
            Self::Esp32S3 => 8,
            Self::Esp32 | Self::Esp32C6 => 6,
            Self::Esp32C3 => 4,
        }
    }
}

/// Which HTTP server serves the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    /// picoserve, as the firmware serves it (`server`).
    Picoserve,
    /// A hand-written accept loop and HTTP/1.1 request loop (`hand_written`).
    HandWritten,
    /// edge-http over tcp-layers' `LayeredAcceptor` (`edge`).
    EdgeHttp,
}

impl Server {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "picoserve" => Some(Self::Picoserve),
            "hand-written" => Some(Self::HandWritten),
            "edge-http" => Some(Self::EdgeHttp),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Picoserve => "picoserve",
            Self::HandWritten => "hand-written",
            Self::EdgeHttp => "edge-http",
        }
    }
}

/// Whether connections go through the layer stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layering {
    /// The firmware's layer stack (`serve_layered` of each server).
    Layered,
    /// The same server on the bare socket (`serve_unlayered`).
    Unlayered,
}

#[derive(Debug)]
struct Options {
    tap: String,
    address: Ipv4Cidr,
    gateway: Option<Ipv4Addr>,
    port: u16,
    chip: Chip,
    server: Server,
    layering: Layering,
    log_level: log::LevelFilter,
}

const USAGE: &str = "usage: camera-tap [--tap tap0] [--address 192.168.69.2/24] [--gateway IP] \
[--port 80] [--chip esp32s3|esp32c3|esp32c6|esp32] [--server picoserve|hand-written|edge-http] \
[--unlayered] [--log info]";

impl Options {
    fn parse() -> Result<Self, String> {
        let mut options = Options {
            tap: "tap0".into(),
            address: Ipv4Cidr::new(Ipv4Addr::new(192, 168, 69, 2), 24),
            gateway: None,
            port: 80,
            chip: Chip::Esp32S3,
            server: Server::Picoserve,
            layering: Layering::Layered,
            log_level: log::LevelFilter::Info,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
            match flag.as_str() {
                "--tap" => options.tap = value("--tap")?,
                "--address" => options.address = parse_cidr(&value("--address")?)?,
                "--gateway" => {
                    let gateway = value("--gateway")?;
                    options.gateway = Some(
                        gateway
                            .parse()
                            .map_err(|_| format!("--gateway: not an IPv4 address: {gateway}"))?,
                    );
                }
                "--port" => {
                    let port = value("--port")?;
                    options.port = port
                        .parse()
                        .map_err(|_| format!("--port: not a port number: {port}"))?;
                }
                "--chip" => {
                    let chip = value("--chip")?;
                    options.chip = Chip::parse(&chip).ok_or(format!(
                        "--chip: one of esp32s3, esp32c3, esp32c6, esp32 (got {chip})"
                    ))?;
                }
                "--server" => {
                    let server = value("--server")?;
                    options.server = Server::parse(&server).ok_or(format!(
                        "--server: one of picoserve, hand-written, edge-http (got {server})"
                    ))?;
                }
                "--unlayered" => options.layering = Layering::Unlayered,
                "--log" => {
                    let level = value("--log")?;
                    options.log_level = level.parse().map_err(|_| {
                        format!("--log: one of off, error, warn, info, debug, trace (got {level})")
                    })?;
                }
                "--help" | "-h" => return Err(USAGE.into()),
                other => return Err(format!("unknown argument {other}\n{USAGE}")),
            }
        }
        Ok(options)
    }
}

fn parse_cidr(text: &str) -> Result<Ipv4Cidr, String> {
    let error =
        || format!("--address: an IPv4 address with its prefix, like 192.168.69.2/24 (got {text})");
    let (address, prefix) = text.split_once('/').ok_or_else(error)?;
    let address: Ipv4Addr = address.parse().map_err(|_| error())?;
    let prefix: u8 = prefix.parse().map_err(|_| error())?;
    if prefix > 32 {
        return Err(error());
    }
    Ok(Ipv4Cidr::new(address, prefix))
}

/// One line per record on stderr, the level first (scripts count `WARN` and `ERROR`
/// lines), with the seconds since start.
struct StderrLog;

static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let elapsed = START.get_or_init(std::time::Instant::now).elapsed();
            eprintln!(
                "{:<5} {:>9.3} {}: {}",
                record.level(),
                elapsed.as_secs_f64(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    START.get_or_init(std::time::Instant::now);
    log::set_logger(&StderrLog).expect("the only logger");
    log::set_max_level(options.log_level);

    let device = match TunTapDevice::new(&options.tap) {
        Ok(device) => device,
        Err(err) => {
            eprintln!(
                "cannot open the TAP device '{}': {err}\n\
                 create it first (as root): ip tuntap add name {0} mode tap && ip link set {0} up",
                options.tap
            );
            std::process::exit(1);
        }
    };
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: options.address,
        gateway: options.gateway,
        dns_servers: Default::default(),
    });
    static RESOURCES: StaticCell<StackResources<STACK_SOCKETS>> = StaticCell::new();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    let (stack, runner) =
        embassy_net::new(device, config, RESOURCES.init(StackResources::new()), seed);

    stats::install_event_hook();
    spawner.spawn(net_task(runner).expect("one network task"));
    spawner.spawn(
        http_task(
            stack,
            options.port,
            options.chip,
            options.server,
            options.layering,
        )
        .expect("one HTTP task"),
    );

    stack.wait_config_up().await;
    info!(
        "open http://{}:{}/ ({} HTTP sockets, {:?}, server: {}, layers: {})",
        options.address.address(),
        options.port,
        options.chip.sockets(),
        options.chip,
        options.server.name(),
        match options.layering {
            Layering::Layered => server::LAYERS,
            Layering::Unlayered => "none",
        }
    );
    loop {
        Timer::after(Duration::from_secs(60)).await;
        info!("{}", stats::snapshot());
    }
}

/// Serves HTTP on every socket of the chip; the accept loops never return.
#[embassy_executor::task]
async fn http_task(
    stack: embassy_net::Stack<'static>,
    port: u16,
    chip: Chip,
    server: Server,
    layering: Layering,
) {
    match chip {
        Chip::Esp32S3 => serve(stack, port, server, layering, &ESP32_S3).await,
        Chip::Esp32C6 => serve(stack, port, server, layering, &ESP32_C6).await,
        Chip::Esp32 => serve(stack, port, server, layering, &ESP32).await,
        Chip::Esp32C3 => serve(stack, port, server, layering, &ESP32_C3).await,
    }
}

/// One server, layered or not, on the `N` sockets of a chip profile.
async fn serve<const N: usize>(
    stack: embassy_net::Stack<'static>,
    port: u16,
    server: Server,
    layering: Layering,
    resources: &'static server::Resources<N>,
) -> ! {
    match (server, layering) {
        (Server::Picoserve, Layering::Layered) => {
            server::serve_layered(stack, port, resources).await
        }
        (Server::Picoserve, Layering::Unlayered) => {
            server::serve_unlayered(stack, port, resources).await
        }
        (Server::HandWritten, Layering::Layered) => {
            hand_written::serve_layered(stack, port, resources).await
        }
        (Server::HandWritten, Layering::Unlayered) => {
            hand_written::serve_unlayered(stack, port, resources).await
        }
        (Server::EdgeHttp, Layering::Layered) => edge::serve_layered(stack, port, resources).await,
        (Server::EdgeHttp, Layering::Unlayered) => {
            edge::serve_unlayered(stack, port, resources).await
        }
    }
}

/// Drives the IP stack: every frame in and out of the TAP goes through this task.
#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}
