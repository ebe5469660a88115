import RESP

/// The coordinator's Lua scripts: one per transition, each atomic inside Valkey.
///
/// Keys of queue Q (every one carries the hash tag `{Q}`, so a script touches one slot and runs unchanged
/// on a Valkey Cluster):
///
///     vf:{Q}:b:ID          hash   status attempts max_attempts token lease_until due_at location worker
///                                 last_error result_key created_at updated_at rows bytes retry_base_ms retry_max_ms
///     vf:{Q}:ready         list   exactly the pending batches, oldest first (cancel and delete of a pending
///                                 batch LREM it, O(length); claim still skips any id that is not pending)
///     vf:{Q}:leases        zset   id → lease deadline (ms): exactly the processing batches
///     vf:{Q}:delayed       zset   id → retry due time (ms): exactly the retry_wait batches
///     vf:{Q}:idx:STATE     zset   id → updated_at (ms), for completed, failed and cancelled
///
/// Every state thus has one index holding exactly its batches (pending: `ready`, processing: `leases`,
/// retry_wait: `delayed`, the finished states `idx:STATE`): counts are exact (LLEN/ZCARD), listing takes the
/// newest of each (then orders by updated_at) and retention finds finished batches by finish time. Reusing
/// ready/leases/delayed as indexes keeps a register + claim + complete at two zset writes and one zset delete.
///     vf:{Q}:wake          list   wake-up tokens; idle workers BLPOP it; trimmed to 256 once over 512
///     vf:{Q}:seq           string counter behind fencing tokens
///     vf:queues            set    every queue ever registered; the one cross-slot key, written (SADD) before a
///                                 queue's first registration and never part of an atomic step
///
///     vf:{Q}:config        hash   shards (K), history (every K the queue has had, e.g. "1,4"), updated_at;
///                                 absent = K 1 (`QueueLayout`)
///
/// A sharded queue (`valkeyflight queue configure Q --shards K`, `--queue-shards Q=K`) is K such key sets,
/// `vf:{Q#0}:…` to `vf:{Q#K-1}:…`, each in its own slot; a new batch goes to sub-queue CRC16(ID) mod K, the
/// scripts never see the difference, and `vf:queues` lists Q itself (the Swift side sums and merges the
/// sub-queues). After K changes, the key sets of every earlier K keep being claimed from, swept and counted.
///
/// Rules every script follows:
/// - Times come from `TIME` inside Valkey (node clocks do not matter); all times are Unix milliseconds.
/// - A batch is in exactly one index zset, the one of its `status` (reap and promote re-check the hash anyway).
/// - Fencing: claim writes a fresh token `SEQ.ATTEMPT` (SEQ from `INCR vf:{Q}:seq`, unique per queue forever);
///   extend, complete, fail and release change nothing unless the caller's token equals the stored one, and
///   answer "stale" otherwise (the token is removed whenever a batch leaves `processing`).
/// - Retention: a finished batch (completed, failed, cancelled) is dropped by `expire` (housekeeping, which
///   every coordinator and worker process runs) once its `updated_at` is older than the retention. No key TTL:
///   a hash vanishing on its own would leave its index entry behind and make the counts inexact.
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
        local function index(p, st)
          if st == 'pending' then return p .. 'ready' end
          if st == 'processing' then return p .. 'leases' end
          if st == 'retry_wait' then return p .. 'delayed' end
          return p .. 'idx:' .. st
        end
        -- Index moves for the zset-indexed states; the ready list (pending) is pushed and popped by the callers.
        local function move(p, id, old, new, score)
          if old and old ~= 'pending' then redis.call('ZREM', index(p, old), id) end
          if new and new ~= 'pending' then redis.call('ZADD', index(p, new), score, id) end
        end
        local function wake(p, n)
          if n < 1 then return end
          if n > 256 then n = 256 end
          local tokens = {}
          for i = 1, n do tokens[i] = '1' end
          if redis.call('RPUSH', p .. 'wake', unpack(tokens)) > 512 then
            redis.call('LTRIM', p .. 'wake', -256, -1)
          end
        end

        """

    /// KEYS[1] batch hash, KEYS[2] (only when registering into the plain queue `vf:{Q}:`) its `config`;
    /// ARGV prefix, id, location, rows, bytes, max_attempts.
    /// → {1, created_at} when created, {0, HGETALL…} when the key exists, {-2} when KEYS[2] says the queue is
    /// sharded now (the caller's layout is stale: it reads it again and registers in the right sub-queue).
    static let register = script(
        """
        local p, id = ARGV[1], ARGV[2]
        if KEYS[2] and redis.call('EXISTS', KEYS[1]) == 0 then
          local k = tonumber(redis.call('HGET', KEYS[2], 'shards') or '1') or 1
          if k > 1 then return {-2} end
        end
        if redis.call('HSETNX', KEYS[1], 'status', 'pending') == 0 then
          return {0, redis.call('HGETALL', KEYS[1])}
        end
        local now = clock()
        redis.call('HSET', KEYS[1], 'attempts', 0, 'max_attempts', ARGV[6],
          'location', ARGV[3], 'rows', ARGV[4], 'bytes', ARGV[5], 'created_at', now, 'updated_at', now)
        redis.call('RPUSH', p .. 'ready', id)
        wake(p, 1)
        return {1, now}
        """)

    /// KEYS[1] ready list; ARGV prefix, worker, limit, lease_ms, retry_base_ms, retry_max_ms, max_attempts (the
    /// claiming worker's `--max-attempts` replaces the one recorded at registration).
    /// → flat array, 8 per claim: id, token, attempt, location, max_attempts, rows, bytes, and the ms the batch
    /// waited since it became pending (its previous `updated_at`).
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
            local f = redis.call('HMGET', b, 'status', 'location', 'max_attempts', 'rows', 'bytes', 'attempts', 'updated_at')
            if f[1] == 'pending' then
              local attempt = (tonumber(f[6]) or 0) + 1
              local token = redis.call('INCR', p .. 'seq') .. '.' .. attempt
              redis.call('HSET', b, 'status', 'processing', 'attempts', attempt, 'token', token,
                'lease_until', deadline, 'worker', ARGV[2], 'updated_at', now,
                'retry_base_ms', ARGV[5], 'retry_max_ms', ARGV[6], 'max_attempts', ARGV[7])
              move(p, id, nil, 'processing', deadline)
              claimed = claimed + 1
              local n = #out
              out[n + 1] = id
              out[n + 2] = token
              out[n + 3] = attempt
              out[n + 4] = f[2] or ''
              out[n + 5] = ARGV[7]
              out[n + 6] = f[4] or '0'
              out[n + 7] = f[5] or '0'
              out[n + 8] = now - (tonumber(f[7]) or now)
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

    /// KEYS[1] batch hash; ARGV prefix, id, token, result_key ('' = none). → 1, 0 stale, -1 unknown.
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
        move(p, id, 'processing', 'completed', now)
        return 1
        """)

    /// KEYS[1] batch hash; ARGV prefix, id, token, error, delay_ms, permanent ('1'/'0').
    /// → {1} failed, {2, due_at} retry scheduled, {0} stale, {-1} unknown.
    static let fail = script(
        """
        local p, id = ARGV[1], ARGV[2]
        local f = redis.call('HMGET', KEYS[1], 'status', 'token', 'attempts', 'max_attempts')
        if not f[1] then return {-1} end
        if f[1] ~= 'processing' or f[2] ~= ARGV[3] then return {0} end
        local now = clock()
        redis.call('HDEL', KEYS[1], 'token', 'lease_until')
        if ARGV[6] == '1' or (tonumber(f[3]) or 0) >= (tonumber(f[4]) or 1) then
          redis.call('HSET', KEYS[1], 'status', 'failed', 'last_error', ARGV[4], 'updated_at', now)
          move(p, id, 'processing', 'failed', now)
          return {1}
        end
        local due = now + tonumber(ARGV[5])
        redis.call('HSET', KEYS[1], 'status', 'retry_wait', 'last_error', ARGV[4], 'due_at', due, 'updated_at', now)
        move(p, id, 'processing', 'retry_wait', due)
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
            move(p, id, nil, 'pending', now)
            n = n + 1
          end
        end
        wake(p, n)
        return {n, #ids}
        """)

    /// KEYS[1] leases zset; ARGV prefix, max, default retry_base_ms, default retry_max_ms.
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
              move(p, id, nil, 'failed', now)
              failed = failed + 1
            else
              local base = tonumber(f[5]) or tonumber(ARGV[3])
              local cap = tonumber(f[6]) or tonumber(ARGV[4])
              local delay = math.min(cap, base * 2 ^ math.max(0, attempts - 1))
              local jitter = 0.5 + ((micros + i * 7919) % 500) / 1000
              local due = now + math.floor(delay * jitter)
              redis.call('HSET', b, 'status', 'retry_wait', 'last_error', err, 'due_at', due, 'updated_at', now)
              move(p, id, nil, 'retry_wait', due)
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
        redis.call('RPUSH', p .. 'ready', id)
        move(p, id, st, nil, now)
        wake(p, 1)
        return {1, redis.call('HGETALL', KEYS[1])}
        """)

    /// KEYS[1] batch hash; ARGV prefix, id. pending|retry_wait|processing → cancelled.
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
        if st == 'pending' then redis.call('LREM', p .. 'ready', 0, id) end
        move(p, id, st, 'cancelled', now)
        return {1, redis.call('HGETALL', KEYS[1])}
        """)

    /// KEYS[1] batch hash; ARGV prefix, id. Removes the batch from every index. → {1, HGETALL…}, {-1} unknown.
    static let delete = script(
        """
        local p, id = ARGV[1], ARGV[2]
        local h = redis.call('HGETALL', KEYS[1])
        if #h == 0 then return {-1} end
        redis.call('DEL', KEYS[1])
        for i = 1, #h, 2 do
          if h[i] == 'status' and h[i + 1] == 'pending' then redis.call('LREM', p .. 'ready', 0, id) end
        end
        for _, st in ipairs({'processing', 'retry_wait', 'completed', 'failed', 'cancelled'}) do
          redis.call('ZREM', index(p, st), id)
        end
        return {1, h}
        """)

    /// KEYS[1] ready list; ARGV prefix. → the six counts in `BatchState.allCases` order.
    static let stats = script(
        """
        local p = ARGV[1]
        local out = {}
        for i, st in ipairs({'pending', 'processing', 'retry_wait', 'completed', 'failed', 'cancelled'}) do
          if st == 'pending' then
            out[i] = redis.call('LLEN', index(p, st))
          else
            out[i] = redis.call('ZCARD', index(p, st))
          end
        end
        return out
        """)

    /// KEYS[1] `vf:{Q}:config`; ARGV shards ('' = keep the stored one: prune only), the history in effect when
    /// the hash has none (comma-separated), the plain queue's prefix `vf:{Q}:` (same slot).
    /// Sets `shards`, adds it to `history` (ascending, no duplicates), and drops 1 from the history when the
    /// queue is sharded and its plain key set holds nothing (no batch can come back there: register refuses the
    /// plain queue of a sharded one); stamps `updated_at`. → {shards, history, changed (1/0)}; {0, '', 0} when
    /// pruning a queue without a configuration.
    static let configure = script(
        """
        local p = ARGV[3]
        local shards = tonumber(ARGV[1])
        local stored = redis.call('HGET', KEYS[1], 'history')
        if ARGV[1] == '' then
          shards = tonumber(redis.call('HGET', KEYS[1], 'shards') or '')
          if not shards or not stored then return {0, '', 0} end
        end
        local seen, list = {}, {}
        for k in string.gmatch((stored or ARGV[2]) .. ',' .. shards, '%d+') do
          local n = tonumber(k)
          if n and n >= 1 and not seen[n] then seen[n] = true; list[#list + 1] = n end
        end
        if shards > 1 and seen[1] and redis.call('LLEN', p .. 'ready') == 0 then
          local empty = true
          for _, s in ipairs({'leases', 'delayed', 'idx:completed', 'idx:failed', 'idx:cancelled'}) do
            if redis.call('ZCARD', p .. s) > 0 then empty = false; break end
          end
          if empty then
            local kept = {}
            for _, n in ipairs(list) do if n ~= 1 then kept[#kept + 1] = n end end
            list = kept
          end
        end
        table.sort(list)
        local history = table.concat(list, ',')
        if ARGV[1] == '' and history == stored then return {shards, history, 0} end
        local now = clock()
        redis.call('HSET', KEYS[1], 'shards', shards, 'history', history, 'updated_at', now)
        return {shards, history, 1}
        """)

    private static func script(_ body: String) -> RESPScript { RESPScript(Self.prelude + body) }
}
