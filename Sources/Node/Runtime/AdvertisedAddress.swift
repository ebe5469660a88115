internal import FlightRPC
internal import Glibc
internal import RESP

/// What a serving node advertises (`--advertise`, recorded with every batch it stores, so other hosts' workers
/// reach it there) and the checks that keep it reachable.
enum AdvertisedAddress {
    /// The host a node advertises before it binds: `--advertise`'s host, the listen host, or — listening on a
    /// wildcard (`0.0.0.0`, `::`) — this machine's first non-loopback address (`chosen` is then true).
    ///
    /// - Throws: ``NodeError/invalidArgument(_:)`` when a node that stores batches (modes `all` and `flight`)
    ///   would advertise a loopback address while `--valkey` names another host: workers elsewhere could not
    ///   reach its batches.
    static func resolve(_ configuration: NodeConfiguration) throws -> (host: String, chosen: Bool) {
        let advertised: (host: String, chosen: Bool)
        if let advertise = configuration.advertise {
            advertised = (try Self.host(ofLocation: advertise), false)
        } else if Self.isWildcard(configuration.listen.host) {
            advertised = (Self.firstInterfaceAddress(ipv6: configuration.listen.host.contains(":"))
                ?? (configuration.listen.host.contains(":") ? "::1" : "127.0.0.1"), true)
        } else {
            advertised = (configuration.listen.host, false)
        }
        let storesBatches = configuration.mode == .all || configuration.mode == .flight
        if storesBatches, Self.isLoopback(advertised.host), let valkey = configuration.valkeyURL,
           let remote = Self.remoteHost(inValkeyURL: valkey) {
            let source = configuration.advertise != nil ? "--advertise \(configuration.advertise ?? "")"
                : advertised.chosen ? "listening on \(configuration.listen) (no other address on this machine)"
                : "--listen \(configuration.listen)"
            throw NodeError.invalidArgument(
                "would advertise the loopback address \(advertised.host) (\(source)) while --valkey is on another host (\(remote)): workers on other hosts could not fetch this node's batches; pass --advertise grpc://ADDRESS:PORT with an address they reach (and --listen 0.0.0.0:PORT or that address)")
        }
        return advertised
    }

    /// `grpc://HOST:PORT` → `HOST`.
    static func host(ofLocation location: String) throws -> String {
        do {
            return try FlightLocation(parsing: location).host
        } catch {
            throw NodeError.invalidArgument("--advertise \(location): \(error)")
        }
    }

    static func isWildcard(_ host: String) -> Bool {
        ["0.0.0.0", "::", "0:0:0:0:0:0:0:0", ""].contains(host)
    }

    /// `localhost`, `127.0.0.0/8`, `::1` (also IPv4-mapped), and the wildcards (which reach only this machine
    /// when connected to).
    static func isLoopback(_ host: String) -> Bool {
        let lower = host.lowercased()
        if ["localhost", "ip6-localhost", "ip6-loopback", "::1", "0:0:0:0:0:0:0:1"].contains(lower) || lower.hasSuffix(".localhost") {
            return true
        }
        if Self.isWildcard(lower) { return true }
        let v4 = lower.hasPrefix("::ffff:") ? String(lower.dropFirst(7)) : lower
        var address = in_addr()
        if inet_pton(AF_INET, v4, &address) == 1 {
            return UInt32(bigEndian: address.s_addr) >> 24 == 127 || address.s_addr == 0
        }
        return false
    }

    /// The first host of `--valkey` (comma-separated seeds) that is not this machine's loopback, or nil when
    /// Valkey is local (loopback addresses, Unix sockets).
    static func remoteHost(inValkeyURL url: String) -> String? {
        for text in url.split(separator: ",") {
            let trimmed = String(text.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
            guard !trimmed.isEmpty, let configuration = try? RESPConfiguration.valkey(url: trimmed, caFile: nil) else { continue }
            if case let .tcp(host, _) = configuration.endpoint, !Self.isLoopback(host) { return host }
        }
        return nil
    }

    /// The first address of an interface that is up and not loopback (IPv4 first unless `ipv6`), in the order
    /// `getifaddrs` lists them.
    static func firstInterfaceAddress(ipv6: Bool) -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return nil }
        defer { freeifaddrs(list) }
        var v4: String?
        var v6: String?
        var entry: UnsafeMutablePointer<ifaddrs>? = first
        while let current = entry {
            defer { entry = current.pointee.ifa_next }
            let flags = Int32(bitPattern: current.pointee.ifa_flags)
            guard let socketAddress = current.pointee.ifa_addr, flags & Int32(IFF_UP) != 0,
                  flags & Int32(IFF_LOOPBACK) == 0 else { continue }
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
            switch Int32(socketAddress.pointee.sa_family) {
            case AF_INET where v4 == nil:
                var address = socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                guard inet_ntop(AF_INET, &address, &text, socklen_t(text.count)) != nil else { continue }
                v4 = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            case AF_INET6 where v6 == nil:
                var address = socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                // Link-local addresses (fe80::/10) need a scope: not something another host can dial by text.
                let isLinkLocal = withUnsafeBytes(of: &address) { $0[0] == 0xFE && $0[1] & 0xC0 == 0x80 }
                guard !isLinkLocal, inet_ntop(AF_INET6, &address, &text, socklen_t(text.count)) != nil else { continue }
                v6 = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            default:
                continue
            }
        }
        return ipv6 ? (v6 ?? v4) : (v4 ?? v6)
    }
}
