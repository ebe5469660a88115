import ValkeyFlightCLI

/// The executable's entry point: the command line lives in `ValkeyFlightCLI`, everything else below it.
@main
extension ValkeyFlightCommand {}
