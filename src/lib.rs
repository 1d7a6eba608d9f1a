//! FPM Doctor: finds why PHP sites on NGINX + PHP-FPM answer 502 on
//! DirectAdmin servers. See ARCHITECTURE.md for the map and its invariants.

pub mod access;
pub mod accounts;
pub mod apply;
pub mod checks;
pub mod config;
pub mod demo;
pub mod evidence;
pub mod hooks;
pub mod model;
pub mod nginx;
pub mod privilege;
pub mod probe;
pub mod readers;
pub mod repair;
pub mod report;
pub mod scan;
pub mod sim;
pub mod web;
