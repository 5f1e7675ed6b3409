pub mod agent;
pub mod fakeapi;
