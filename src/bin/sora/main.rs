//! `sora`: drives a running Sora node through its HTTP control plane.
//!
//! ```text
//! sora services                         every service: kinds, state, health
//! sora status cleanup                   one service's counters
//! sora trigger cleanup                  run a periodic service now
//! sora act translator translate --params '{"text": "hello", "to": "fr"}'
//! sora events --service translator      follow the live events
//! ```
//!
//! Exit codes are stable, for scripts: see [`Failure::exit_code`].

mod client;
mod output;
mod sse;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use client::{Call, Client, Failure};

/// Drive a running Sora node: list, inspect, poke and call its services, follow its events.
#[derive(Debug, Parser)]
#[command(name = "sora", version)]
struct Cli {
    /// Where the node's control plane listens.
    #[arg(
        long,
        env = "SORA_URL",
        default_value = "http://127.0.0.1:7070",
        global = true
    )]
    url: String,

    /// The bearer token the node requires (the read-only one lists, shows and follows).
    #[arg(long, env = "SORA_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,

    /// How long a request may take, connecting included, before `sora` gives up and exits 7
    /// (`500ms`, `30s`, `2m`). A call with `--timeout` waits that long and a second more.
    #[arg(
        long,
        env = "SORA_DEADLINE",
        default_value = "30s",
        value_parser = parse_deadline,
        global = true
    )]
    deadline: Duration,

    /// Print JSON for scripts instead of tables for people.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// List every service with its kinds, state and health.
    Services,
    /// Show a service's status: state, runs, skips, failures, queue, restarts, events.
    Status {
        /// The service's name.
        name: String,
    },
    /// Show a service's last runs, newest first: periodic runs, commands, durable job attempts
    /// and failed actions.
    Runs {
        /// The service's name.
        name: String,
        /// At most this many (the node answers 1000 at most).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Show what a service declared: kinds, schedule, actions, commands, events, policies.
    Info {
        /// The service's name.
        name: String,
    },
    /// Run a periodic service now (or once more after its current run).
    Trigger {
        /// The service's name.
        name: String,
        #[command(flatten)]
        call: CallArgs,
    },
    /// Ask a service to check its queue.
    CheckQueue {
        /// The service's name.
        name: String,
        #[command(flatten)]
        call: CallArgs,
    },
    /// Ask a service to process a batch.
    Batch {
        /// The service's name.
        name: String,
        /// How many items to take.
        #[arg(long)]
        size: Option<usize>,
        /// Which items to take.
        #[arg(long)]
        filter: Option<String>,
        #[command(flatten)]
        call: CallArgs,
    },
    /// Send one of a service's own commands.
    Command {
        /// The service's name.
        name: String,
        /// The command's name.
        command: String,
        /// The command's arguments, as JSON.
        #[arg(long, value_name = "JSON")]
        args: Option<String>,
        #[command(flatten)]
        call: CallArgs,
    },
    /// Call an action and print its reply; a durable action's call prints its job's id
    /// (or, with `--wait`, its reply).
    Act {
        /// The service's name.
        name: String,
        /// The action's name.
        action: String,
        /// The action's parameters, as JSON.
        #[arg(long, value_name = "JSON")]
        params: Option<String>,
        #[command(flatten)]
        call: CallArgs,
        /// A durable action: wait for the job's reply.
        #[arg(long, conflicts_with_all = ["delay", "key"])]
        wait: bool,
        /// A durable action: run the job no sooner than this (`30s`, `5m`).
        #[arg(long, value_parser = humantime::parse_duration)]
        delay: Option<Duration>,
        /// A durable action: its idempotency key; a job with the same key is enqueued once.
        #[arg(long)]
        key: Option<String>,
    },
    /// List durable jobs, a page at a time, oldest first.
    Jobs {
        /// Only this service's.
        #[arg(long)]
        service: Option<String>,
        /// Only those in this state: queued, scheduled, running, retrying, completed, dead.
        #[arg(long)]
        state: Option<String>,
        /// At most this many (the node answers 1000 at most).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// The newest first.
        #[arg(long)]
        newest: bool,
        /// Start after this job (the page before printed it).
        #[arg(long, value_name = "ID")]
        after: Option<String>,
    },
    /// Show a durable job: its parameters, state, attempts, errors and reply.
    Job {
        /// The job's id.
        id: String,
    },
    /// Give a dead job a new series of attempts.
    Retry {
        /// The job's id.
        id: String,
    },
    /// Remove a job that is not running.
    Discard {
        /// The job's id.
        id: String,
    },
    /// Show the state kept under a service's name, a page of it or one key; with `--clear`,
    /// remove it (all of it, or the key).
    State {
        /// The service's name (a renamed or removed service's state stays under its old one).
        name: String,
        /// Only this key.
        key: Option<String>,
        /// Start after this key (the page before printed it).
        #[arg(long, conflicts_with_all = ["key", "clear"])]
        after: Option<String>,
        /// At most this many (default 100, most 1000).
        #[arg(long, value_name = "N", conflicts_with_all = ["key", "clear"])]
        limit: Option<usize>,
        /// Remove the key, or every value when no key is given.
        #[arg(long)]
        clear: bool,
    },
    /// Pause a periodic service's schedule: its ticks are skipped until it is resumed.
    Pause {
        /// The service's name.
        name: String,
    },
    /// Resume a paused service's schedule.
    Resume {
        /// The service's name.
        name: String,
    },
    /// Follow the live events, reconnecting without losing any the node still keeps.
    Events {
        /// Only this service's events.
        #[arg(long)]
        service: Option<String>,
        /// Only events of this name.
        #[arg(long)]
        event: Option<String>,
        /// Start after this event id (the events the node still keeps come first).
        #[arg(long, value_name = "ID")]
        since: Option<String>,
        /// Stop after this many events.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Show the node's health; exits 6 when it is unhealthy.
    Health {
        /// Only whether the runtime is alive (`/health/live`).
        #[arg(long, conflicts_with = "ready")]
        live: bool,
        /// Only whether start-up is over and every service is ready (`/health/ready`).
        #[arg(long)]
        ready: bool,
    },
}

/// The options of a command or an action.
#[derive(Debug, Args)]
struct CallArgs {
    /// Among queued calls, the higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
    /// Give up after this long (`500ms`, `2s`, `1m`); the handler is cancelled.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Carried into the handler's context and tracing span, and echoed back.
    #[arg(long, value_name = "ID")]
    correlation_id: Option<String>,
}

/// A deadline above zero.
fn parse_deadline(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

impl From<CallArgs> for Call {
    fn from(args: CallArgs) -> Self {
        Call {
            priority: args.priority,
            timeout: args.timeout,
            correlation_id: args.correlation_id,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("sora: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let client = Client::new(&cli.url, cli.token, cli.deadline)?;
    let out = output::Output::new(cli.json);
    match cli.command {
        Cmd::Services => out.services(&client.services().await?)?,
        Cmd::Status { name } => out.status(&client.status(&name).await?)?,
        Cmd::Info { name } => out.info(&client.info(&name).await?)?,
        Cmd::Runs { name, limit } => out.runs(&client.runs(&name, limit).await?)?,
        Cmd::Trigger { name, call } => {
            client.verb(&name, "trigger", call.into()).await?;
            out.done(&name, "triggered");
        }
        Cmd::CheckQueue { name, call } => {
            client.verb(&name, "check-queue", call.into()).await?;
            out.done(&name, "checked its queue");
        }
        Cmd::Batch {
            name,
            size,
            filter,
            call,
        } => {
            client.batch(&name, size, filter, call.into()).await?;
            out.done(&name, "processed a batch");
        }
        Cmd::Command {
            name,
            command,
            args,
            call,
        } => {
            let args = args.as_deref().map(client::json_arg).transpose()?;
            client.command(&name, &command, args, call.into()).await?;
            out.done(&name, &format!("ran `{command}`"));
        }
        Cmd::Act {
            name,
            action,
            params,
            call,
            wait,
            delay,
            key,
        } => {
            let params = params.as_deref().map(client::json_arg).transpose()?;
            let job = client::JobArgs { wait, delay, key };
            out.reply(&client.act(&name, &action, params, call.into(), job).await?)?;
        }
        Cmd::Jobs {
            service,
            state,
            limit,
            newest,
            after,
        } => {
            let query = client::JobQuery {
                service,
                state,
                limit,
                order: newest.then_some("newest"),
                after,
            };
            out.jobs(&client.jobs(&query).await?)?;
        }
        Cmd::Job { id } => out.info(&client.job(&id).await?)?,
        Cmd::Retry { id } => {
            client.retry(&id).await?;
            out.done(&id, "is ready again");
        }
        Cmd::Discard { id } => {
            client.discard(&id).await?;
            out.done(&id, "is discarded");
        }
        Cmd::State {
            name,
            key,
            after,
            limit,
            clear,
        } => match (key, clear) {
            (Some(key), true) => {
                client.remove_state(&name, &key).await?;
                out.done(&name, &format!("keeps nothing under `{key}` now"));
            }
            (None, true) => {
                let cleared = client.clear_state(&name).await?;
                let values = if cleared == 1 { "value" } else { "values" };
                out.done(&name, &format!("cleared {cleared} {values}"));
            }
            (Some(key), false) => out.state_entry(&client.state_entry(&name, &key).await?)?,
            (None, false) => out.state(&name, &client.state(&name, after, limit).await?)?,
        },
        Cmd::Pause { name } => {
            client.verb(&name, "pause", Call::default()).await?;
            out.done(&name, "paused");
        }
        Cmd::Resume { name } => {
            client.verb(&name, "resume", Call::default()).await?;
            out.done(&name, "resumed");
        }
        Cmd::Events {
            service,
            event,
            since,
            count,
        } => {
            let filter = client::EventFilter { service, event };
            client.follow(&filter, since, count, &out).await?;
        }
        Cmd::Health { live, ready } => {
            let probe = if live {
                client::Probe::Live
            } else if ready {
                client::Probe::Ready
            } else {
                client::Probe::Health
            };
            let (up, report) = client.health(probe).await?;
            out.health(probe, &report);
            if !up {
                return Ok(ExitCode::from(Failure::UNHEALTHY));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
