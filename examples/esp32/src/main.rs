//! A camera page on an ESP32: Wi-Fi station, DHCP, embassy-net, picoserve, and every
//! HTTP connection wrapped in tcp-layers.
//!
//! The page chain-loads 128 kB JPEG frames back to back and keeps a Server-Sent Events
//! stream open beside them: the load that makes a plain embassy-net server log errors
//! for every browser cancel, starve its other clients and run out of sockets.
//! The app itself (routes, counters, layer stack, accept loops) is the `camera-app`
//! crate beside this one, which the host binary in `tap/` serves on a PC too; this
//! file only brings the network up. Build with the feature `no-layers` for the same
//! firmware on the bare socket.
//!
//! Set `SSID` and `PASSWORD` in the environment at build time.
#![no_std]
#![no_main]
// picoserve's router and response types nest deeply; the task's future type needs more than
// the default 128 levels to lay out.
#![recursion_limit = "256"]

#[cfg(all(feature = "log", feature = "defmt"))]
compile_error!("pick one of the features log and defmt (defmt: --no-default-features)");

// The logging macros: `log` or `defmt`, as the features say.
mod fmt;

use camera_app::{server, stats};
use embassy_executor::Spawner;
use embassy_net::{Runner, StackResources};
use embassy_time::{Duration, Timer};
use esp_backtrace as _;
// Its defmt logger, with the feature `defmt` (with `log`, its logger is installed below).
use esp_hal::{clock::CpuClock, rng::Rng, timer::timg::TimerGroup};
use esp_println as _;
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config as WifiConfig, ControllerConfig, Interface, WifiController,
    sta::StationConfig,
};
use static_cell::StaticCell;
use tcp_layers::{BudgetConfig, limit::StackServices, profile};

esp_bootloader_esp_idf::esp_app_desc!();

/// The network to join; baked in at build time so the firmware needs no provisioning.
const SSID: &str = match option_env!("SSID") {
    Some(ssid) => ssid,
    None => "",
};
const PASSWORD: &str = match option_env!("PASSWORD") {
    Some(password) => password,
    None => "",
};

/// The port the page is served on.
const HTTP_PORT: u16 = 80;

/// HTTP sockets, one accept task each: the chip profiles of tcp-layers (ESP32-S3 8,
/// ESP32-C3 4, ESP32-C6 6). embassy-net has no backlog, so this is also the number of
/// connections the device can hold at once: a browser opens up to 6.
#[cfg(feature = "esp32s3")]
const HTTP_SOCKETS: usize = 8;
#[cfg(feature = "esp32c3")]
const HTTP_SOCKETS: usize = 4;
#[cfg(feature = "esp32c6")]
const HTTP_SOCKETS: usize = 6;
#[cfg(not(any(feature = "esp32s3", feature = "esp32c3", feature = "esp32c6")))]
compile_error!("pick a chip: --features esp32s3, esp32c3 or esp32c6");

/// The chip's budget: total, stream and request slots.
#[cfg(feature = "esp32s3")]
const PROFILE: BudgetConfig = profile::ESP32_S3;
#[cfg(feature = "esp32c3")]
const PROFILE: BudgetConfig = profile::ESP32_C3;
#[cfg(feature = "esp32c6")]
const PROFILE: BudgetConfig = profile::ESP32_C6;

/// Every socket embassy-net holds: the HTTP sockets and the DHCP client's. Running
/// out panics inside the stack, so it is counted here, not guessed.
const STACK_SOCKETS: usize = HTTP_SOCKETS + 1;

/// The connection budget and request buffers; `fits_stack` fails the build if
/// embassy-net's `StackResources` has no room for the budget beside the DHCP client.
static RESOURCES: server::Resources<HTTP_SOCKETS> =
    server::Resources::new(PROFILE.fits_stack(STACK_SOCKETS, StackServices::Dhcp));

/// Shown in the boot log.
#[cfg(not(feature = "no-layers"))]
const DESCRIPTION: &str = server::LAYERS;
#[cfg(feature = "no-layers")]
const DESCRIPTION: &str = "no layers";

#[esp_rtos::main]
async fn main(spawner: Spawner) -> ! {
    #[cfg(feature = "log")]
    esp_println::logger::init_logger_from_env();
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));

    // The Wi-Fi driver allocates its buffers; the HTTP side allocates nothing.
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 36 * 1024);

    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);

    if SSID.is_empty() {
        error!("built without SSID: rebuild with SSID=... PASSWORD=... in the environment");
    }
    let station = StationConfig::default()
        .with_ssid(SSID.try_into().expect("SSID longer than 32 bytes"))
        .with_authentication(if PASSWORD.is_empty() {
            AuthenticationMethodConfig::Open
        } else {
            AuthenticationMethodConfig::Wpa2Personal(
                PASSWORD.try_into().expect("password longer than 64 bytes"),
            )
        });
    let controller = WifiController::new(
        peripherals.WIFI,
        ControllerConfig::default().with_initial_config(WifiConfig::Station(station)),
    )
    .expect("start the Wi-Fi driver");

    let rng = Rng::new();
    let seed = (u64::from(rng.random()) << 32) | u64::from(rng.random());
    static RESOURCES: StaticCell<StackResources<STACK_SOCKETS>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        Interface::station(),
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        seed,
    );

    stats::install_event_hook();
    spawner.spawn(wifi_task(controller).expect("one Wi-Fi task"));
    spawner.spawn(net_task(runner).expect("one network task"));

    stack.wait_config_up().await;
    if let Some(config) = stack.config_v4() {
        info!(
            "open http://{}/ ({} HTTP sockets, layers: {})",
            config.address.address(),
            HTTP_SOCKETS,
            DESCRIPTION
        );
    }

    spawner.spawn(http_task(stack).expect("one HTTP task"));

    loop {
        Timer::after(Duration::from_secs(60)).await;
        #[cfg(feature = "log")]
        info!("{}", stats::snapshot());
        // The JSON line is formatted on the device: once a minute.
        #[cfg(feature = "defmt")]
        info!("{}", defmt::Display2Format(&stats::snapshot()));
    }
}

/// Joins the network and rejoins after every disconnect.
#[embassy_executor::task]
async fn wifi_task(mut controller: WifiController<'static>) {
    loop {
        info!("Wi-Fi: joining '{}'", SSID);
        match controller.connect_async().await {
            Ok(_) => {
                info!("Wi-Fi: joined");
                let reason = controller.wait_for_disconnect_async().await;
                warn!("Wi-Fi: lost ({:?})", reason);
            }
            Err(err) => warn!("Wi-Fi: join failed ({:?})", err),
        }
        // Give the access point time to recover before the next try.
        Timer::after(Duration::from_secs(5)).await;
    }
}

/// Serves HTTP on every socket; the accept loops never return.
#[embassy_executor::task]
async fn http_task(stack: embassy_net::Stack<'static>) {
    #[cfg(not(feature = "no-layers"))]
    server::serve_layered(stack, HTTP_PORT, &RESOURCES).await;
    // The same server on the bare socket: CI measures the layers' size against it.
    #[cfg(feature = "no-layers")]
    server::serve_unlayered(stack, HTTP_PORT, &RESOURCES).await;
}

/// Drives the IP stack: every packet in and out goes through this task.
#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Interface>) {
    runner.run().await
}
