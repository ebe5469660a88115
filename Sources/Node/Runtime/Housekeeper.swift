/// Runs the coordinator's housekeeping (due retries, expired leases, retention) on a short timer. Every coordinator
/// and worker process runs one; the scripts make concurrent runs harmless.
struct Housekeeper: Sendable {
    let coordinator: Coordinator
    let interval: Duration
    let log: NodeLogger

    /// Runs until the task is cancelled.
    func run() async {
        var failures = 0
        while !Task.isCancelled {
            do {
                let report = try await self.coordinator.housekeepingAllQueues()
                failures = 0
                if report.promoted + report.reaped + report.expired > 0 {
                    self.log.debug("housekeeping", ["promoted": String(report.promoted), "reaped": String(report.reaped),
                                                    "failed_by_reap": String(report.failedByReap),
                                                    "expired": String(report.expired)])
                }
            } catch {
                if Task.isCancelled { return }
                failures += 1
                if failures == 1 || failures % 60 == 0 {
                    self.log.warning("housekeeping cannot reach Valkey; retrying", ["error": "\(error)"])
                }
            }
            try? await Task.sleep(for: self.interval)
        }
    }
}
