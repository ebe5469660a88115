import RESP

/// The coordinator's Lua scripts: one per transition, each atomic inside Valkey.
///
/// Keys of queue Q (every one carries the hash tag `{Q}`, so a script touches one slot and runs unchanged
/// on a Valkey Cluster):
///
///     vf:{Q}:b:ID          hash   status attempts max_attempts token lease_until due_at location worker
///                                 last_error result_key created_at updated_at rows bytes retry_base_ms retry_max_ms
///     vf:{Q}:ready         list   ids to claim, oldest first (an id may linger after cancel/delete/retry;
///                                 claim skips any id whose hash is not `pending`)
///     vf:{Q}:leases        zset   id → lease deadline (ms)            (processing batches)
///     vf:{Q}:delayed       zset   id → retry due time (ms)            (retry_wait batches)
///     vf:{Q}:idx:STATE     zset   id → updated_at (ms), one per state: exact counts (ZCARD), newest-first
///                                 listing (ZREVRANGE) and retention (finished batches by finish time)
///     vf:{Q}:wake          list   wake-up tokens; idle workers BLPOP it; trimmed to the newest 256
///     vf:{Q}:seq           string counter behind fencing tokens
///     vf:queues            set    every queue ever registered; the one cross-slot key, written (SADD) before a
///                                 queue's first registration and never part of an atomic step
///
/// Rules every script follows:
/// - Times come from `TIME` inside Valkey (node clocks do not matter); all times are Unix milliseconds.
/// - A batch is in exactly one `idx:STATE` zset, the one of its `status`; `leases` holds exactly the
///   processing batches and `delayed` the retry_wait ones (reap and promote re-check the hash anyway).
/// - Fencing: claim writes a fresh token `SEQ.ATTEMPT` (SEQ from `INCR vf:{Q}:seq`, unique per queue forever);
///   extend, complete, fail and release change nothing unless the caller's token equals the stored one, and
///   answer "stale" otherwise (the token is removed whenever a batch leaves `processing`).
/// - Retention: a finished batch (completed, failed, cancelled) is dropped by `expire` once its `updated_at`
///   is older than the retention; as a safety net for a Valkey nobody runs housekeeping against, its hash also
///   gets a TTL of retention + 1 h (removed again by retry).
/// - Every loop is bounded by an argument (`limit`, `max`); callers repeat while a full batch came back.
/// - Reap counts an expired lease as a failed attempt: retry_wait after the batch's stored retry policy
///   (`min(max, base × 2^(attempt−1))` × a jitter factor in [0.5, 1.0) taken from TIME's microseconds, since
///   math.random is seeded identically for every script call), or failed when attempts ≥ max_attempts.
/// - `retry` sets attempts to 0 and keeps `last_error` (the previous failure stays visible until the next
///   attempt ends); `release` undoes a claim (attempts − 1, token and worker cleared, back to the head of ready).
/// - Replies: integers and flat arrays; -1 = no such batch, 0 = stale token / state does not allow it.
enum CoordinatorScripts {
    /// Shared helpers, prepended to every script.
    static let prelude = """
        local function clock()
          local t = redis.call('TIME')
          return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), tonumber(t[2])
        end
        local function move(p, id, old, new, now)
          if old then redis.call('ZREM', p .. 'idx:' .. old, id) end
          if new then redis.call('ZADD', p .. 'idx:' .. new, now, id) end
        end
        local function wake(p, n)
          if n < 1 then return end
          if n > 256 then n = 256 end
          local tokens = {}
          for i = 1, n do tokens[i] = '1' end
          redis.call('RPUSH', p .. 'wake', unpack(tokens))
          redis.call('LTRIM', p .. 'wake', -256, -1)
        end

        """

    /// KEYS[1] batch hash; ARGV prefix, id, location, rows, bytes, max_attempts.
    /// → {1, created_at} when created, {0, HGETALL…} when the key exists.
    static let register = script(
        """
        local p, id = ARGV[1], ARGV[2]
        if redis.call('EXISTS', KEYS[1]) == 1 then
          return {0, redis.call('HGETALL', KEYS[1])}
        end
        local now = clock()
        redis.call('HSET', KEYS[1], 'status', 'pending', 'attempts', 0, 'max_attempts', ARGV[6],
          'location', ARGV[3], 'rows', ARGV[4], 'bytes', ARGV[5], 'created_at', now, 'updated_at', now)
        redis.call('RPUSH', p .. 'ready', id)
        move(p, id, nil, 'pending', now)
        wake(p, 1)
        return {1, now}
        """)

    /// KEYS[1] ready list; ARGV prefix, worker, limit, lease_ms, retry_base_ms, retry_max_ms.
    /// → flat array, 7 per claim: id, token, attempt, location, max_attempts, rows, bytes.
    static let claim = script(
        """
        local p = ARGV[1]
        local limit = tonumber(ARGV[3])
        local now = clock()
        local deadline = now + tonumber(ARGV[4])
        local out = {}
        local claimed, popped = 0, 0
        local budget = limit + 1000
        while claimed < limit and popped < budget do
          local ids = redis.call('LPOP', KEYS[1], math.min(limit - claimed, budget - popped))
          if not ids then break end
          popped = popped + #ids
          for _, id in ipairs(ids) do
            local b = p .. 'b:' .. id
            local f = redis.call('HMGET', b, 'status', 'location', 'max_attempts', 'rows', 'bytes')
            if f[1] == 'pending' then
              local attempt = redis.call('HINCRBY', b, 'attempts', 1)
              local token = redis.call('INCR', p .. 'seq') .. '.' .. attempt
              redis.call('HSET', b, 'status', 'processing', 'token', token, 'lease_until', deadline,
                'worker', ARGV[2], 'updated_at', now, 'retry_base_ms', ARGV[5], 'retry_max_ms', ARGV[6])
              redis.call('ZADD', p .. 'leases', deadline, id)
              move(p, id, 'pending', 'processing', now)
              claimed = claimed + 1
              local n = #out
              out[n + 1] = id
              out[n + 2] = token
              out[n + 3] = attempt
              out[n + 4] = f[2] or ''
              out[n + 5] = f[3] or '1'
              out[n + 6] = f[4] or '0'
              out[n + 7] = f[5] or '0'
            end
          end
        end
        if claimed < limit and popped >= budget and redis.call('LLEN', KEYS[1]) > 0 then wake(p, 1) end
        return out
        """)

    /// KEYS[1] batch hash; ARGV prefix, id, token, lease_ms. → 1 accepted, 0 stale, -1 unknown.
    static let extend = script(
        """
        local f = redis.call('HMGET', KEYS[1], 'status', 'token')
        if not f[1] then return -1 end
        if f[1] ~= 'processing' or f[2] ~= ARGV[3] then return 0 end
        local deadline = clock() + tonumber(ARGV[4])
        redis.call('HSET', KEYS[1], 'lease_until', deadline)
        redis.call('ZADD', ARGV[1] .. 'leases', deadline, ARGV[2])
        return 1
        """)

    /// KEYS[1] batch hash; ARGV prefix, id, token, result_key ('' = none), ttl_ms. → 1, 0 stale, -1 unknown.
    static let complete = script(
        """
        local p, id = ARGV[1], ARGV[2]
        local f = redis.call('HMGET', KEYS[1], 'status', 'token')
        if not f[1] then return -1 end
        if f[1] ~= 'processing' or f[2] ~= ARGV[3] then return 0 end
        local now = clock()
        redis.call('HSET', KEYS[1], 'status', 'completed', 'updated_at', now)
        if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'result_key', ARGV[4]) end
        redis.call('HDEL', KEYS[1], 'token', 'lease_until')
        redis.call('ZREM', p .. 'leases', id)
        move(p, id, 'processing', 'completed', now)
        redis.call('PEXPIRE', KEYS[1], ARGV[5])
        return 1
        """)

    /// KEYS[1] batch hash; ARGV prefix, id, token, error, delay_ms, permanent ('1'/'0'), ttl_ms.
    /// → {1} failed, {2, due_at} retry scheduled, {0} stale, {-1} unknown.
    static let fail = script(
        """
        local p, id = ARGV[1], ARGV[2]
        local f = redis.call('HMGET', KEYS[1], 'status', 'token', 'attempts', 'max_attempts')
        if not f[1] then return {-1} end
        if f[1] ~= 'processing' or f[2] ~= ARGV[3] then return {0} end
        local now = clock()
        redis.call('ZREM', p .. 'leases', id)
        redis.call('HDEL', KEYS[1], 'token', 'lease_until')
        if ARGV[6] == '1' or (tonumber(f[3]) or 0) >= (tonumber(f[4]) or 1) then
          redis.call('HSET', KEYS[1], 'status', 'failed', 'last_error', ARGV[4], 'updated_at', now)
          move(p, id, 'processing', 'failed', now)
          redis.call('PEXPIRE', KEYS[1], ARGV[7])
          return {1}
        end
        local due = now + tonumber(ARGV[5])
        redis.call('HSET', KEYS[1], 'status', 'retry_wait', 'last_error', ARGV[4], 'due_at', due, 'updated_at', now)
        redis.call('ZADD', p .. 'delayed', due, id)
        move(p, id, 'processing', 'retry_wait', now)
        return {2, due}
        """)

    /// KEYS[1] batch hash; ARGV prefix, id, token. → 1 released, 0 stale, -1 unknown.
    static let release = script(
        """
        local p, id = ARGV[1], ARGV[2]
        local f = redis.call('HMGET', KEYS[1], 'status', 'token')
        if not f[1] then return -1 end
        if f[1] ~= 'processing' or f[2] ~= ARGV[3] then return 0 end
        local now = clock()
        redis.call('HSET', KEYS[1], 'status', 'pending', 'updated_at', now)
        redis.call('HINCRBY', KEYS[1], 'attempts', -1)
        redis.call('HDEL', KEYS[1], 'token', 'lease_until', 'worker')
        redis.call('ZREM', p .. 'leases', id)
        redis.call('LPUSH', p .. 'ready', id)
        move(p, id, 'processing', 'pending', now)
        wake(p, 1)
        return 1
        """)

    /// KEYS[1] delayed zset; ARGV prefix, max. Due retries → pending. → {promoted, examined}.
    static let promote = script(
        """
        local p = ARGV[1]
        local now = clock()
        local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
        local n = 0
        for _, id in ipairs(ids) do
          redis.call('ZREM', KEYS[1], id)
          local b = p .. 'b:' .. id
          if redis.call('HGET', b, 'status') == 'retry_wait' then
            redis.call('HSET', b, 'status', 'pending', 'updated_at', now)
            redis.call('HDEL', b, 'due_at')
            redis.call('RPUSH', p .. 'ready', id)
            move(p, id, 'retry_wait', 'pending', now)
            n = n + 1
          end
        end
        wake(p, n)
        return {n, #ids}
        """)

    /// KEYS[1] leases zset; ARGV prefix, max, ttl_ms, default retry_base_ms, default retry_max_ms.
    /// Expired leases → a failed attempt. → {reaped, failed, examined}.
    static let reap = script(
        """
        local p = ARGV[1]
        local now, micros = clock()
        local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
        local reaped, failed = 0, 0
        for i, id in ipairs(ids) do
          local b = p .. 'b:' .. id
          local f = redis.call('HMGET', b, 'status', 'attempts', 'max_attempts', 'worker', 'retry_base_ms',
            'retry_max_ms', 'lease_until')
          redis.call('ZREM', KEYS[1], id)
          if f[1] == 'processing' and (tonumber(f[7]) or 0) > now then
            redis.call('ZADD', KEYS[1], tonumber(f[7]), id)
          elseif f[1] == 'processing' then
            reaped = reaped + 1
            local err = 'lease expired: worker ' .. (f[4] or '?') .. ' stopped extending its lease'
            redis.call('HDEL', b, 'token', 'lease_until')
            local attempts = tonumber(f[2]) or 0
            if attempts >= (tonumber(f[3]) or 1) then
              redis.call('HSET', b, 'status', 'failed', 'last_error', err, 'updated_at', now)
              move(p, id, 'processing', 'failed', now)
              redis.call('PEXPIRE', b, ARGV[3])
              failed = failed + 1
            else
              local base = tonumber(f[5]) or tonumber(ARGV[4])
              local cap = tonumber(f[6]) or tonumber(ARGV[5])
              local delay = math.min(cap, base * 2 ^ math.max(0, attempts - 1))
              local jitter = 0.5 + ((micros + i * 7919) % 500) / 1000
              local due = now + math.floor(delay * jitter)
              redis.call('HSET', b, 'status', 'retry_wait', 'last_error', err, 'due_at', due, 'updated_at', now)
              redis.call('ZADD', p .. 'delayed', due, id)
              move(p, id, 'processing', 'retry_wait', now)
            end
          end
        end
        return {reaped, failed, #ids}
        """)

    /// KEYS[1] idx:completed; ARGV prefix, retention_ms, max. Drops finished batches older than retention.
    /// → dropped.
    static let expire = script(
        """
        local p = ARGV[1]
        local now = clock()
        local cutoff = now - tonumber(ARGV[2])
        local max = tonumber(ARGV[3])
        local n = 0
        for _, st in ipairs({'completed', 'failed', 'cancelled'}) do
          if n >= max then break end
          local index = p .. 'idx:' .. st
          local ids = redis.call('ZRANGEBYSCORE', index, '-inf', cutoff, 'LIMIT', 0, max - n)
          for _, id in ipairs(ids) do
            redis.call('ZREM', index, id)
            local b = p .. 'b:' .. id
            if redis.call('HGET', b, 'status') == st then redis.call('DEL', b) end
            n = n + 1
          end
        end
        return n
        """)

    /// KEYS[1] batch hash; ARGV prefix, id. failed|cancelled → pending.
    /// → {1, HGETALL…}, {0, status} not allowed, {-1} unknown.
    static let retry = script(
        """
        local p, id = ARGV[1], ARGV[2]
        local st = redis.call('HGET', KEYS[1], 'status')
        if not st then return {-1} end
        if st ~= 'failed' and st ~= 'cancelled' then return {0, st} end
        local now = clock()
        redis.call('HSET', KEYS[1], 'status', 'pending', 'attempts', 0, 'updated_at', now)
        redis.call('HDEL', KEYS[1], 'token', 'lease_until', 'due_at', 'worker')
        redis.call('PERSIST', KEYS[1])
        redis.call('RPUSH', p .. 'ready', id)
        move(p, id, st, 'pending', now)
        wake(p, 1)
        return {1, redis.call('HGETALL', KEYS[1])}
        """)

    /// KEYS[1] batch hash; ARGV prefix, id, ttl_ms. pending|retry_wait|processing → cancelled.
    /// → {1, HGETALL…}, {0, status} not allowed, {-1} unknown.
    static let cancel = script(
        """
        local p, id = ARGV[1], ARGV[2]
        local st = redis.call('HGET', KEYS[1], 'status')
        if not st then return {-1} end
        if st ~= 'pending' and st ~= 'retry_wait' and st ~= 'processing' then return {0, st} end
        local now = clock()
        redis.call('HSET', KEYS[1], 'status', 'cancelled', 'updated_at', now)
        redis.call('HDEL', KEYS[1], 'token', 'lease_until', 'due_at')
        redis.call('ZREM', p .. 'leases', id)
        redis.call('ZREM', p .. 'delayed', id)
        move(p, id, st, 'cancelled', now)
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
        return {1, redis.call('HGETALL', KEYS[1])}
        """)

    /// KEYS[1] batch hash; ARGV prefix, id. Removes the batch from every index. → {1, HGETALL…}, {-1} unknown.
    static let delete = script(
        """
        local p, id = ARGV[1], ARGV[2]
        local h = redis.call('HGETALL', KEYS[1])
        if #h == 0 then return {-1} end
        redis.call('DEL', KEYS[1])
        redis.call('ZREM', p .. 'leases', id)
        redis.call('ZREM', p .. 'delayed', id)
        for _, st in ipairs({'pending', 'processing', 'retry_wait', 'completed', 'failed', 'cancelled'}) do
          redis.call('ZREM', p .. 'idx:' .. st, id)
        end
        return {1, h}
        """)

    /// KEYS[1] idx:pending; ARGV prefix. → the six counts in `BatchState.allCases` order.
    static let stats = script(
        """
        local p = ARGV[1]
        local out = {}
        for i, st in ipairs({'pending', 'processing', 'retry_wait', 'completed', 'failed', 'cancelled'}) do
          out[i] = redis.call('ZCARD', p .. 'idx:' .. st)
        end
        return out
        """)

    private static func script(_ body: String) -> RESPScript { RESPScript(Self.prelude + body) }
}
