pub mod fakeapi;
