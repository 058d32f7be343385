//! End-to-end tests: the real host binary on a socket in a temp dir, the
//! real model, real client processes.

mod bad_input;
mod cli;
mod concurrency;
mod experiment;
mod faults;
mod http;
mod http_access;
mod index;
mod lifecycle;
mod models;
mod mpnet;
mod parity;
mod precision;
mod python;
mod remote;
mod search_eval;
mod search_modes;
mod security;
mod socket_search;
mod tools;
