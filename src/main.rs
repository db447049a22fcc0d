fn main() -> std::process::ExitCode {
    pingpilot::run()
}
