//! Lua scripts against redis-server 7.0 (byte-identical replies: type
//! conversions both ways, errors and where they were raised, pcall, the
//! libraries, SCRIPT), and on a cluster: effects applied once, atomically,
//! through any node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use elastickv_integration::diff::{pair, run_script};

/// Conversions and the redis API, compared with Redis.
const SCRIPTS: &[&str] = &[
    // Lua to Redis.
    r#"EVAL "return 1" 0"#,
    r#"EVAL "return 3.99" 0"#,
    r#"EVAL "return -3.99" 0"#,
    r#"EVAL "return 'hello'" 0"#,
    r#"EVAL "return ''" 0"#,
    r#"EVAL "return true" 0"#,
    r#"EVAL "return false" 0"#,
    r#"EVAL "return nil" 0"#,
    r#"EVAL "return {}" 0"#,
    r#"EVAL "return {1, 'two', {3, {4}}, nil, 5}" 0"#,
    r#"EVAL "return {1, 2, false, 4}" 0"#,
    r#"EVAL "return {ok='FINE'}" 0"#,
    r#"EVAL "return {ok='two\r\nlines'}" 0"#,
    r#"EVAL "return {err='MYERR custom'}" 0"#,
    r#"EVAL "return {err='no code'}" 0"#,
    r#"EVAL "return {1, {err='nested'}, {ok='fine'}}" 0"#,
    r#"EVAL "return redis.status_reply('STATUS')" 0"#,
    r#"EVAL "return redis.error_reply('MY error')" 0"#,
    r#"EVAL "return redis.error_reply('-MY dash')" 0"#,
    r#"EVAL "return redis.error_reply(5)" 0"#,
    r#"EVAL "return redis.status_reply()" 0"#,
    r#"EVAL "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2], #KEYS, #ARGV}" 2 a b c d"#,
    r#"EVAL "return 2^53" 0"#,
    r#"EVAL "return 0/0 == 0/0" 0"#,
    r#"EVAL "return tostring(1/3)" 0"#,
    r#"EVAL "return tonumber('0x10')" 0"#,
    r#"EVAL "return string.format('%5.2f|%d|%s', 3.14159, 42, 'x')" 0"#,
    // Redis to Lua.
    "SET s hello",
    "RPUSH l a b c",
    "HSET h f v",
    "SET n 10",
    r#"EVAL "return redis.call('get', 's')" 0"#,
    r#"EVAL "return type(redis.call('get', 'nosuch'))" 0"#,
    r#"EVAL "return redis.call('get', 'nosuch') == false" 0"#,
    r#"EVAL "return type(redis.call('incr', 'n'))" 0"#,
    r#"EVAL "return redis.call('incr', 'n') + 0.5" 0"#,
    r#"EVAL "return redis.call('lrange', 'l', 0, -1)" 0"#,
    r#"EVAL "return #redis.call('lrange', 'l', 0, -1)" 0"#,
    r#"EVAL "local r = redis.call('set', 'x', 'y'); return type(r) .. ':' .. r.ok" 0"#,
    r#"EVAL "return redis.call('set', 'x', 'y')" 0"#,
    r#"EVAL "return redis.call('hgetall', 'h')" 0"#,
    r#"EVAL "return redis.call('exists', 's', 'nosuch', 's')" 0"#,
    r#"EVAL "return redis.call('set', 'num', 12.5)" 0"#,
    r#"EVAL "return redis.call('get', 'num')" 0"#,
    r#"EVAL "return redis.call('set', 'num', 1e20)" 0"#,
    r#"EVAL "return redis.call('get', 'num')" 0"#,
    r#"EVAL "return redis.call('type', 'l')" 0"#,
    // RESP3 inside the script.
    r#"EVAL "redis.setresp(3); return redis.call('hgetall', 'h')" 0"#,
    r#"EVAL "redis.setresp(3); local m = redis.call('hgetall', 'h'); return m.map.f" 0"#,
    r#"EVAL "redis.setresp(3); return type(redis.call('get', 'nosuch'))" 0"#,
    r#"EVAL "redis.setresp(3); return redis.call('smembers', 'nosuch')" 0"#,
    r#"EVAL "redis.setresp(3); return {double=3.5}" 0"#,
    r#"EVAL "redis.setresp(3); return true" 0"#,
    r#"EVAL "redis.setresp(3); return false" 0"#,
    r#"EVAL "redis.setresp(4)" 0"#,
    r#"EVAL "redis.setresp()" 0"#,
    // Errors, and where they came from.
    r#"EVAL "return redis.call('incr', 's')" 0"#,
    "EVAL \"local a = 1\nreturn redis.call('incr', 's')\" 0",
    r#"EVAL "return redis.pcall('incr', 's')" 0"#,
    r#"EVAL "local ok, e = pcall(redis.call, 'incr', 's'); return {tostring(ok), e}" 0"#,
    r#"EVAL "local e = redis.pcall('incr', 's'); return e.err" 0"#,
    r#"EVAL "return redis.call('nosuch')" 0"#,
    r#"EVAL "return redis.call('get')" 0"#,
    r#"EVAL "return redis.call()" 0"#,
    r#"EVAL "return redis.call({})" 0"#,
    r#"EVAL "return redis.pcall('get')" 0"#,
    r#"EVAL "return redis.call('eval', 'return 1', 0)" 0"#,
    r#"EVAL "return redis.call('multi')" 0"#,
    r#"EVAL "return redis.call('subscribe', 'x')" 0"#,
    r#"EVAL "error('boom')" 0"#,
    r#"EVAL "error({err='TABLE err'})" 0"#,
    r#"EVAL "error('no position', 0)" 0"#,
    r#"EVAL "return 1 + nil" 0"#,
    r#"EVAL "local t = nil; return t.x" 0"#,
    r#"EVAL "return undefined_global" 0"#,
    r#"EVAL "x = 5" 0"#,
    r#"EVAL "rawset(_G, 'x', 1)" 0"#,
    r#"EVAL "string.x = 1" 0"#,
    r#"EVAL "return pcall(error)" 0"#,
    r#"EVAL "retur 1" 0"#,
    r#"EVAL "return 'unfinished" 0"#,
    // Sandbox: what exists and what does not.
    r#"EVAL "return type(os)" 0"#,
    r#"EVAL "return {type(print), type(dofile), type(loadfile)}" 0"#,
    r#"EVAL "return {type(cjson), type(bit), type(string), type(math), type(table)}" 0"#,
    r#"EVAL "return {type(loadstring), type(pcall), type(xpcall), type(unpack)}" 0"#,
    r#"EVAL "return redis.REDIS_VERSION" 0"#,
    r#"EVAL "return redis.REDIS_VERSION_NUM" 0"#,
    r#"EVAL "return {redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING}" 0"#,
    r#"EVAL "redis.log(redis.LOG_WARNING, 'from a script')" 0"#,
    r#"EVAL "redis.log(redis.LOG_WARNING)" 0"#,
    r#"EVAL "redis.log('x', 'y')" 0"#,
    r#"EVAL "redis.log(9, 'y')" 0"#,
    r#"EVAL "return redis.sha1hex('')" 0"#,
    r#"EVAL "return redis.sha1hex('Pizza & Mandolino')" 0"#,
    r#"EVAL "return redis.sha1hex()" 0"#,
    r#"EVAL "return redis.replicate_commands()" 0"#,
    r#"EVAL "redis.set_repl(redis.REPL_ALL); return 1" 0"#,
    r#"EVAL "redis.set_repl(99)" 0"#,
    // bit.
    r#"EVAL "return {bit.band(0xff, 0x0f), bit.bor(1, 2, 4), bit.bxor(5, 3), bit.bnot(0)}" 0"#,
    r#"EVAL "return {bit.lshift(1, 31), bit.rshift(-1, 28), bit.arshift(-256, 4)}" 0"#,
    r#"EVAL "return {bit.rol(0x12345678, 8), bit.ror(0x12345678, 8), bit.bswap(0x12345678)}" 0"#,
    r#"EVAL "return {bit.tohex(255), bit.tohex(-1, -4), bit.tohex(0x1234, 2), bit.tobit(2^32 + 5)}" 0"#,
    r#"EVAL "return bit.band()" 0"#,
    r#"EVAL "return {pcall(bit.band)}" 0"#,
    r#"EVAL "return bit.band('12', 10)" 0"#,
    // cjson.
    r#"EVAL "return cjson.encode({a={1,2,3},b=1.5,c='x/y\"z',d=true,e=false})" 0"#,
    r#"EVAL "return cjson.encode({[1]=1,[3]=3})" 0"#,
    r#"EVAL "return cjson.encode({[1]=1,[30]=3})" 0"#,
    r#"EVAL "return cjson.encode({})" 0"#,
    r#"EVAL "return cjson.encode({[1.5]=1, [2]=2})" 0"#,
    r#"EVAL "return cjson.encode('W tab	 nl
')" 0"#,
    r#"EVAL "return cjson.encode({0.1, 1e300, -0.5, 123456789012345678, 1/3})" 0"#,
    r#"EVAL "return cjson.encode(1/0)" 0"#,
    r#"EVAL "return cjson.encode({[true]=1})" 0"#,
    r#"EVAL "return cjson.encode(function() end)" 0"#,
    r#"EVAL "return cjson.encode()" 0"#,
    r#"EVAL "return cjson.encode(cjson.null)" 0"#,
    r#"EVAL "local t = {} local c = t for i = 1, 1001 do c[1] = {} c = c[1] end return cjson.encode(t)" 0"#,
    r#"EVAL "return cjson.encode(cjson.decode('{"x":null,"y":[true,false],"z":{"n":-1.5e3}}'))" 0"#,
    r#"EVAL "local t = cjson.decode('[1,"two",null,{"k":"v"}]'); return {t[1], t[2], type(t[3]), t[4].k}" 0"#,
    r#"EVAL "return cjson.decode('"\u00e9\ud83d\ude00\n"')" 0"#,
    r#"EVAL "return cjson.decode('0x10')" 0"#,
    r#"EVAL "return cjson.decode('  42  ')" 0"#,
    r#"EVAL "return cjson.decode('[1,2')" 0"#,
    r#"EVAL "return cjson.decode('{"a" 1}')" 0"#,
    r#"EVAL "return cjson.decode('{1:2}')" 0"#,
    r#"EVAL "return cjson.decode('[1,]')" 0"#,
    r#"EVAL "return cjson.decode('"abc')" 0"#,
    r#"EVAL "return cjson.decode('"\q"')" 0"#,
    r#"EVAL "return cjson.decode('"\u12"')" 0"#,
    r#"EVAL "return cjson.decode('nul')" 0"#,
    r#"EVAL "return cjson.decode('[1] x')" 0"#,
    r#"EVAL "return cjson.decode('')" 0"#,
    r#"EVAL "return cjson.decode({})" 0"#,
    r#"EVAL "return cjson.decode(42)" 0"#,
    r#"EVAL "return {pcall(cjson.decode, '{')}" 0"#,
    r#"EVAL "return {cjson._NAME, cjson._VERSION, type(cjson.null), cjson.encode_max_depth()}" 0"#,
    // cmsgpack.
    r#"EVAL "return cmsgpack.pack(1, -1, 127, 128, -33, 255, 256, 65536, -129, -40000, 2^32, -2^33, 0.5, 1.1, 'str', true, false, nil)" 0"#,
    r#"EVAL "return cmsgpack.pack({1, 2, 3}, {a = 1}, {}, string.rep('x', 40), string.rep('y', 300))" 0"#,
    r#"EVAL "return {cmsgpack.unpack(cmsgpack.pack(1, 'two', {3, 4}, 5.5))}" 0"#,
    r#"EVAL "local t = cmsgpack.unpack(cmsgpack.pack({a = {b = 'c'}})); return t.a.b" 0"#,
    r#"EVAL "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3))}" 0"#,
    r#"EVAL "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3), 2)}" 0"#,
    r#"EVAL "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2)}" 0"#,
    r#"EVAL "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 5, 1)}" 0"#,
    r#"EVAL "return cmsgpack.unpack('')" 0"#,
    r#"EVAL "return cmsgpack.unpack('93')" 0"#,
    r#"EVAL "return cmsgpack.pack()" 0"#,
    r#"EVAL "return cmsgpack.unpack()" 0"#,
    r#"EVAL "return cmsgpack.unpack_one('x', -1)" 0"#,
    r#"EVAL "return cmsgpack.unpack_one('x', 5)" 0"#,
    r#"EVAL "local t = {} local c = t for i = 1, 20 do c[1] = {} c = c[1] end return cmsgpack.pack(t)" 0"#,
    // struct.
    r#"EVAL "return struct.pack('>iH<h', 1, 2, -3)" 0"#,
    r#"EVAL "return {struct.unpack('>iH<h', struct.pack('>iH<h', 1, 2, -3))}" 0"#,
    r#"EVAL "return struct.pack('bBlLdf', -1, 255, -2, 3, 1.5, 2.5)" 0"#,
    r#"EVAL "return {struct.unpack('dfc3s', struct.pack('dfc3s', 1.25, 0.5, 'abc', 'zero'))}" 0"#,
    r#"EVAL "return struct.pack('!4 b i', 1, 2)" 0"#,
    r#"EVAL "return {struct.size('i'), struct.size('!8 b d'), struct.size('bhilT')}" 0"#,
    r#"EVAL "return struct.size('s')" 0"#,
    r#"EVAL "return struct.pack('z', 1)" 0"#,
    r#"EVAL "return struct.pack('i', 'x')" 0"#,
    r#"EVAL "return struct.pack('c5', 'ab')" 0"#,
    r#"EVAL "return struct.unpack('i', 'ab')" 0"#,
    r#"EVAL "return struct.unpack('b', 'a', 0)" 0"#,
    r#"EVAL "return struct.pack('i40', 1)" 0"#,
    r#"EVAL "return struct.pack('!3 i', 1)" 0"#,
    r#"EVAL "return {struct.unpack('bc0', struct.pack('bc0', 3, 'xyz'))}" 0"#,
    // Read-only forms and flags.
    r#"EVAL_RO "return redis.call('get', 's')" 0"#,
    r#"EVAL_RO "return redis.call('set', 's', 'x')" 0"#,
    r#"EVAL_RO "return redis.call('publish', 'c', 'x')" 0"#,
    "EVAL \"#!lua flags=no-writes\nreturn redis.call('set', 's', 'x')\" 0",
    "EVAL \"#!lua flags=no-writes\nreturn redis.call('get', 's')\" 0",
    "EVAL_RO \"#!lua\nreturn 1\" 0",
    "EVAL \"#!lua flags=bogus\nreturn 1\" 0",
    "EVAL \"#!python\nreturn 1\" 0",
    "EVAL \"#!lua name=x\nreturn 1\" 0",
    r##"EVAL "#!lua" 0"##,
    "EVAL \"#!lua\nreturn redis.call('get', KEYS[1])\" 1 s",
    // Argument checks.
    r#"EVAL "return 1" 1"#,
    r#"EVAL "return 1" -1"#,
    r#"EVAL "return 1" x"#,
    "EVAL",
    r#"EVAL "return 1""#,
    // SCRIPT and EVALSHA.
    r#"SCRIPT LOAD "return 'loaded'""#,
    r#"EVALSHA 0e3c0a57e1ad9d2e9b3a8a4de0b4efc1d7d7e83c 0"#,
    r#"EVALSHA e0e1f9fabfc9d4800c877a703b823ac0578ff8db 0"#,
    r#"EVALSHA E0E1F9FABFC9D4800C877A703B823AC0578FF8DB 0"#,
    r#"EVALSHA_RO e0e1f9fabfc9d4800c877a703b823ac0578ff8db 0"#,
    r#"EVALSHA short 0"#,
    r#"EVALSHA short x"#,
    r#"EVALSHA e0e1f9fabfc9d4800c877a703b823ac0578ff8db x"#,
    r#"SCRIPT EXISTS e0e1f9fabfc9d4800c877a703b823ac0578ff8db nosuch E0E1F9FABFC9D4800C877A703B823AC0578FF8DB"#,
    r#"SCRIPT LOAD "retur 1""#,
    "SCRIPT LOAD",
    r#"EVAL "return 'cached by eval'" 0"#,
    "SCRIPT EXISTS 6b1bf486c81ceb7edf3c093f4c48582e38c0e791",
    "SCRIPT KILL",
    "SCRIPT FLUSH BOGUS",
    "SCRIPT FLUSH SYNC EXTRA",
    "SCRIPT DEBUG MAYBE",
    "SCRIPT NOSUCH",
    "SCRIPT HELP",
    "SCRIPT FLUSH",
    "SCRIPT EXISTS e0e1f9fabfc9d4800c877a703b823ac0578ff8db",
    r#"EVALSHA e0e1f9fabfc9d4800c877a703b823ac0578ff8db 0"#,
    "SCRIPT FLUSH ASYNC",
    // Big replies, both ways.
    r#"EVAL "local t = {} for i = 1, 20000 do t[i] = i end return t" 0"#,
    r#"EVAL "return string.rep('x', 1000000)" 0"#,
    r#"EVAL "local t = {} for i = 1, 3000 do t[i] = {i, tostring(i), {ok = 'S' .. i}} end return t" 0"#,
    r#"EVAL "for i = 1, 5000 do redis.call('rpush', 'big', string.rep('e', 100) .. i) end return #redis.call('lrange', 'big', 0, -1)" 0"#,
    "LRANGE big 4990 -1",
    r#"EVAL "return redis.call('lrange', 'big', 0, -1)" 0"#,
    r#"EVAL "return cjson.encode(redis.call('lrange', 'big', 0, 999))" 0"#,
    // What the scripts wrote is there afterwards.
    r#"EVAL "redis.call('del', 'w'); for i = 1, 100 do redis.call('rpush', 'w', i) end; return redis.call('llen', 'w')" 0"#,
    "LRANGE w 0 4",
    "LLEN w",
    r#"EVAL "redis.call('set', 'partial', 1); redis.call('incr', 's'); return 1" 0"#,
    "GET partial",
    r#"EVAL "redis.call('set', 'caught', 1); local r = redis.pcall('incr', 's'); redis.call('set', 'after', 2); return r" 0"#,
    "MGET caught after",
    r#"EVAL "redis.call('set', 'tmp', 'v', 'PX', 100000); return redis.call('pttl', 'tmp') > 99000" 0"#,
    r#"EVAL "redis.call('hset', 'hh', 'a', 1, 'b', 2); redis.call('hdel', 'hh', 'a'); return redis.call('hgetall', 'hh')" 0"#,
    "HGETALL hh",
    r#"EVAL "redis.call('zadd', 'z', 1, 'a', 2, 'b'); redis.call('zincrby', 'z', 5, 'a'); return redis.call('zrange', 'z', 0, -1, 'withscores')" 0"#,
    "ZRANGE z 0 -1 WITHSCORES",
    r#"EVAL "return redis.call('blpop', 'nolist', 0)" 0"#,
    r#"EVAL "redis.call('rpush', 'bl', 'x'); return redis.call('blpop', 'bl', 0)" 0"#,
];

/// FUNCTION and FCALL, compared with Redis (one library listed at a time:
/// Redis lists libraries in hash-table order).
const FUNCTIONS: &[&str] = &[
    "FUNCTION FLUSH",
    "FUNCTION LOAD \"#!lua name=lib1\nredis.register_function('f1', function(keys, args) return {keys[1], args[1]} end)\"",
    "FUNCTION LOAD \"#!lua name=lib1\nredis.register_function('other', function() return 1 end)\"",
    "FUNCTION LOAD \"#!lua name=libx\nredis.register_function('F1', function() return 1 end)\"",
    "FUNCTION LOAD \"#!lua name=lib2\nredis.register_function()\"",
    "FUNCTION LOAD \"#!lua name=lib2\nredis.call('ping')\"",
    "FUNCTION LOAD \"#!lua name=lib2\nlocal x = string.len('a')\"",
    "FUNCTION LOAD \"#!lua name=lib2\nerror('boom')\"",
    "FUNCTION LOAD \"#!lua name=lib2\nretur 1\"",
    "FUNCTION LOAD \"#!lua name=lib2\nreturn 1\"",
    "FUNCTION LOAD \"#!lua name=lib2\nredis.register_function{function_name='f2', callback=function() return 2 end, flags={'no-writes','bogus'}}\"",
    "FUNCTION LOAD \"#!lua name=lib2\nredis.register_function('bad name', function() end)\"",
    "FUNCTION LOAD \"#!lua name=lib2\nredis.register_function('f5', function() end)\nredis.register_function('f5', function() end)\"",
    "FUNCTION LOAD \"#!lua name=lib2\nredis.register_function{function_name='f2'}\"",
    "FUNCTION LOAD \"#!lua name=lib2\nredis.register_function{callback=function() end}\"",
    "FUNCTION LOAD \"#!lua name=lib2\nredis.register_function{function_name='f2', callback=function() end, bogus=1}\"",
    "FUNCTION LOAD \"#!lua name=lib2\nredis.register_function(1, 2)\"",
    "FUNCTION LOAD \"#!lua name=lib2\nredis.register_function{function_name='f2', callback=function() return redis.call('get', KEYS and 'x' or 'y') end, flags={'no-writes'}, description='reads'}\"",
    "FUNCTION LOAD \"#!lua name=bad-name\nredis.register_function('f5', function() end)\"",
    "FUNCTION LOAD \"#!luaX name=x\n\"",
    "FUNCTION LOAD \"#!lua\n\"",
    "FUNCTION LOAD \"#!lua name=a name=b\n\"",
    "FUNCTION LOAD \"#!lua foo=bar\n\"",
    "FUNCTION LOAD \"no shebang\"",
    "FUNCTION LOAD \"#!lua name=x\"",
    "FUNCTION LOAD REPLACE",
    "FUNCTION LOAD BOGUS \"#!lua name=x\n\"",
    "SET x value",
    "FCALL f1 1 key arg",
    "FCALL F1 1 key arg",
    "FCALL_RO f1 0",
    "FCALL f2 0",
    "FCALL_RO f2 0",
    "FCALL nosuch 0",
    "FCALL f1 x",
    "FCALL f1 5",
    "FCALL f1 -1",
    "FUNCTION LOAD \"#!lua name=lib3\nredis.register_function('f3', function(keys, args) error('inside') end)\nredis.register_function('f4', function(keys, args) return redis.call('incr', keys[1]) end)\nredis.register_function('f6', function(keys, args) redis.call('set', keys[1], args[1]) return redis.call('get', keys[1]) end)\"",
    "FCALL f3 0",
    "FCALL f4 1 x",
    "FCALL f6 1 y written",
    "GET y",
    "FUNCTION LIST LIBRARYNAME lib1",
    "FUNCTION LIST LIBRARYNAME lib2 WITHCODE",
    "FUNCTION LIST LIBRARYNAME LIB2",
    "FUNCTION LIST LIBRARYNAME nosuch",
    "FUNCTION LIST bogus",
    "FUNCTION LIST LIBRARYNAME",
    "FUNCTION LOAD REPLACE \"#!lua name=lib1\nredis.register_function('f1', function() return 'replaced' end)\"",
    "FCALL f1 0",
    "FUNCTION LOAD REPLACE \"#!lua name=lib1\nredis.register_function('f2', function() return 'taken' end)\"",
    "FUNCTION DELETE nosuch",
    "FUNCTION DELETE lib3",
    "FCALL f3 0",
    "FUNCTION STATS",
    "FUNCTION KILL",
    "FUNCTION RESTORE bogus",
    "FUNCTION RESTORE bogus WHAT",
    "FUNCTION RESTORE a b c",
    "FUNCTION FLUSH bogus",
    "FUNCTION FLUSH a b",
    "FUNCTION HELP",
    "FUNCTION NOSUCH",
    "FUNCTION DELETE lib2",
    "FUNCTION LIST",
    "FUNCTION DUMP",
    "FUNCTION FLUSH",
    "FUNCTION LIST",
    "FCALL f1 0",
];

#[test]
fn functions_match_redis() {
    let (_dir, node, redis) = pair("1");
    run_script(&mut redis.raw(), &mut node.raw(), FUNCTIONS);
}

/// A DUMP from Redis restores here, and ours restores in Redis, with each
/// policy's collisions as Redis reports them.
/// The data of a RESP bulk string reply.
fn bulk_payload(reply: &[u8]) -> Vec<u8> {
    let header_end = reply.iter().position(|&b| b == b'\n').unwrap() + 1;
    reply[header_end..reply.len() - 2].to_vec()
}

#[test]
fn function_dumps_restore_both_ways() {
    let (_dir, node, redis) = pair("1");
    let (mut r, mut e) = (redis.raw(), node.raw());
    let long_body = format!(
        "#!lua name=big\n{}redis.register_function('big', function() return 'big' end)",
        "-- a comment long enough for LZF to be worth it\n".repeat(30)
    );
    let libraries = [
        "#!lua name=small\nredis.register_function('small', function() return 'small' end)"
            .to_string(),
        long_body,
    ];
    for code in &libraries {
        for client in [&mut r, &mut e] {
            client.call(&["FUNCTION", "LOAD", code.as_str()]);
        }
    }
    // One library at a time: the order of several depends on Redis's
    // hash table.
    for code in &libraries {
        for client in [&mut r, &mut e] {
            client.call(&["FUNCTION", "FLUSH"]);
            client.call(&["FUNCTION", "LOAD", code.as_str()]);
        }
        let ours = e.call(&["FUNCTION", "DUMP"]);
        let theirs = r.call(&["FUNCTION", "DUMP"]);
        assert_eq!(ours, theirs, "FUNCTION DUMP of {code:?}");
        let payload = bulk_payload(&theirs);
        for client in [&mut r, &mut e] {
            client.call(&["FUNCTION", "FLUSH"]);
        }
        for policy in [
            &[][..],
            &[&b"APPEND"[..]][..],
            &[&b"REPLACE"[..]][..],
            &[&b"FLUSH"[..]][..],
        ] {
            let mut cmd = vec![b"FUNCTION".to_vec(), b"RESTORE".to_vec(), payload.clone()];
            cmd.extend(policy.iter().map(|p| p.to_vec()));
            let expected = r.call(&cmd);
            let got = e.call(&cmd);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&expected),
                "FUNCTION RESTORE {policy:?}"
            );
        }
    }
}

#[test]
fn scripts_match_redis() {
    let (_dir, node, redis) = pair("1");
    run_script(&mut redis.raw(), &mut node.raw(), SCRIPTS);
}

#[test]
fn scripts_match_redis_over_resp3() {
    let (_dir, node, redis) = pair("1");
    let (mut r, mut e) = (redis.raw(), node.raw());
    r.call(&["HELLO", "3"]);
    e.call(&["HELLO", "3"]);
    run_script(&mut r, &mut e, SCRIPTS);
}

/// On four shards, keys sharing a hash tag behave as on one; a script
/// without declared keys runs on the shard of the first key it touches.
#[test]
fn scripts_on_several_shards_match_redis() {
    let (_dir, node, redis) = pair("4");
    run_script(
        &mut redis.raw(),
        &mut node.raw(),
        &[
            r#"EVAL "redis.call('set', KEYS[1], 1); redis.call('incr', KEYS[2]); return redis.call('mget', KEYS[1], KEYS[2])" 2 {t}a {t}b"#,
            r#"EVAL "return redis.call('mget', '{t}a', '{t}b', '{t}c')" 0"#,
            r#"EVAL "redis.call('set', 'solo', 'x'); return redis.call('get', 'solo')" 0"#,
            r#"EVAL "return redis.call('incrby', '{u}n', 7)" 0"#,
            "MGET {t}a {t}b solo {u}n",
        ],
    );
}

/// SCRIPT LOAD through one node makes the script runnable through every
/// node at once, after restarts too; SCRIPT FLUSH through another forgets
/// it everywhere (on each node once it applied the flush).
#[test]
fn loaded_scripts_reach_every_node_and_survive_restarts() {
    let mut cluster = elastickv_integration::Cluster::start(3, 2, &[], &[]);
    let ids = cluster.ids();
    cluster.wait_for_leaders(&ids, std::time::Duration::from_secs(30));
    let body = "return redis.call('incrby', KEYS[1], ARGV[1])";
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(body)
        .query(&mut cluster.node(1).client())
        .unwrap();
    let evalsha = |cluster: &elastickv_integration::Cluster, id: u64| -> redis::RedisResult<i64> {
        redis::cmd("EVALSHA")
            .arg(&sha)
            .arg(1)
            .arg("counted")
            .arg(10)
            .query(&mut cluster.node(id).client())
    };
    for &id in &ids {
        let exists: Vec<i64> = redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(&sha)
            .query(&mut cluster.node(id).client())
            .unwrap();
        assert_eq!(exists, [1], "node {id}");
        evalsha(&cluster, id).unwrap();
    }
    for &id in &ids {
        cluster.node_mut(id).kill9();
    }
    for &id in &ids {
        cluster.node_mut(id).restart();
    }
    cluster.wait_for_leaders(&ids, std::time::Duration::from_secs(30));
    assert_eq!(evalsha(&cluster, 3).unwrap(), 40);
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut cluster.node(2).client())
        .unwrap();
    // Through the node that flushed at once; through the others as soon as
    // they applied it (a node that still has a script runs it without
    // asking shard 0, as a Redis Cluster node keeps its own cache).
    let flushed = |id: u64| matches!(evalsha(&cluster, id), Err(e) if e.code() == Some("NOSCRIPT"));
    assert!(flushed(2));
    for &id in &ids {
        let waited = std::time::Instant::now();
        while !flushed(id) {
            assert!(
                waited.elapsed() < std::time::Duration::from_secs(5),
                "node {id} still runs the flushed script"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Read-modify-write scripts (safe only if atomic) from clients on every
/// node at once, on one key: none of the increments is lost.
#[test]
fn script_increments_from_every_node_lose_no_update() {
    let cluster = elastickv_integration::Cluster::start(3, 2, &[], &[]);
    let ids = cluster.ids();
    cluster.wait_for_leaders(&ids, std::time::Duration::from_secs(30));
    let per_client = 60;
    let clients_per_node = 2;
    let script = "local v = tonumber(redis.call('get', KEYS[1]) or '0') \
                  redis.call('set', KEYS[1], v + 1) \
                  redis.call('rpush', KEYS[2], v + 1) \
                  return v + 1";
    let started = std::time::Instant::now();
    let mut handles = Vec::new();
    for &id in &ids {
        for _ in 0..clients_per_node {
            let mut conn = cluster.node(id).client();
            handles.push(std::thread::spawn(move || {
                (0..per_client)
                    .map(|_| {
                        redis::cmd("EVAL")
                            .arg(script)
                            .arg(2)
                            .arg("{c}counter")
                            .arg("{c}seen")
                            .query::<i64>(&mut conn)
                            .unwrap()
                    })
                    .collect::<Vec<i64>>()
            }));
        }
    }
    let mut answers: Vec<i64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let total = (ids.len() * clients_per_node * per_client) as i64;
    answers.sort_unstable();
    // Every run saw the one before it: each value was handed out once.
    assert_eq!(answers, (1..=total).collect::<Vec<i64>>());
    for &id in &ids {
        let mut conn = cluster.node(id).client();
        let value: i64 = redis::cmd("GET")
            .arg("{c}counter")
            .query(&mut conn)
            .unwrap();
        assert_eq!(value, total, "through node {id}");
        let seen: Vec<i64> = redis::cmd("LRANGE")
            .arg("{c}seen")
            .arg(0)
            .arg(-1)
            .query(&mut conn)
            .unwrap();
        assert_eq!(seen, (1..=total).collect::<Vec<i64>>(), "through node {id}");
    }
    eprintln!(
        "{total} script increments from {} clients in {:?}, none lost",
        ids.len() * clients_per_node,
        started.elapsed()
    );
}

/// A script that never ends is reported: past busy-reply-threshold other
/// scripts get -BUSY, and SCRIPT KILL stops it (nothing it wrote stays).
#[test]
fn a_runaway_script_is_busy_then_killed() {
    let dir = tempfile::tempdir().unwrap();
    let node = elastickv_integration::Node::start(&dir.path().join("data"), &["--shards", "1"]);
    let mut conn = node.client();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("busy-reply-threshold")
        .arg(200)
        .query(&mut conn)
        .unwrap();
    let idle = redis::cmd("SCRIPT")
        .arg("KILL")
        .query::<()>(&mut conn)
        .unwrap_err();
    assert_eq!(idle.code(), Some("NOTBUSY"));
    let mut runaway = node.client();
    let stuck = std::thread::spawn(move || {
        redis::cmd("EVAL")
            .arg("redis.call('set', 'written', 1) while true do end")
            .arg(0)
            .query::<()>(&mut runaway)
            .unwrap_err()
    });
    std::thread::sleep(std::time::Duration::from_millis(600));
    let busy = redis::cmd("EVAL")
        .arg("return 1")
        .arg(0)
        .query::<i64>(&mut conn)
        .unwrap_err();
    assert_eq!(busy.code(), Some("BUSY"), "{busy}");
    // Plain commands are not held up meanwhile.
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("SCRIPT").arg("KILL").query(&mut conn).unwrap();
    let killed = stuck.join().unwrap();
    assert!(
        killed
            .to_string()
            .contains("Script killed by user with SCRIPT KILL"),
        "{killed}"
    );
    let written: Option<String> = redis::cmd("GET").arg("written").query(&mut conn).unwrap();
    assert_eq!(written, None);
    let one: i64 = redis::cmd("EVAL")
        .arg("return 1")
        .arg(0)
        .query(&mut conn)
        .unwrap();
    assert_eq!(one, 1);
}

/// A script cannot join a transaction (its writes replicate apart from
/// the transaction's entry): refused while queueing, which voids it.
#[test]
fn scripts_inside_multi_are_refused_and_void_the_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let node = elastickv_integration::Node::start(&dir.path().join("data"), &["--shards", "1"]);
    let mut c = node.raw();
    assert_eq!(c.call(&["MULTI"]), b"+OK\r\n");
    assert_eq!(c.call(&["SET", "k", "v"]), b"+QUEUED\r\n");
    assert_eq!(
        String::from_utf8_lossy(&c.call(&["EVAL", "return 1", "0"])),
        "-ERR EVAL inside MULTI is not supported\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&c.call(&["EXEC"])),
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(c.call(&["GET", "k"]), b"$-1\r\n");
}
