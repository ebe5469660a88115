import ArgumentParser
import Node

/// The executable's entry point: everything lives in `Node`.
@main
extension ValkeyFlightCommand {}
