//! The `bit` library scripts get, as LuaBitOp 1.0 (the one Redis embeds)
//! defines it: 32-bit operations on Lua numbers, results as signed 32-bit
//! numbers.

use mlua::{Lua, MultiValue, Table, Value};

use crate::vm::{LibFn, LibResult, number_arg};

/// A Lua number as LuaBitOp reads it: modulo 2^32, by adding 2^52 + 2^51
/// and keeping the low 32 bits of the double's representation.
pub fn normalize(n: f64) -> i32 {
    let shifted = n + 6_755_399_441_055_744.0;
    shifted.to_bits() as u32 as i32
}

/// Argument `index` (1-based) of `name`, as `luaL_checknumber` takes it.
fn bit_arg(args: &MultiValue, index: usize) -> LibResult<i32> {
    number_arg(args, index).map(normalize)
}

fn int(n: i32) -> Value {
    Value::Number(f64::from(n))
}

fn fold(op: fn(i32, i32) -> i32) -> LibFn {
    Box::new(move |_lua, args| {
        let mut acc = bit_arg(&args, 1)?;
        for i in 2..=args.len() {
            acc = op(acc, bit_arg(&args, i)?);
        }
        Ok(MultiValue::from_vec(vec![int(acc)]))
    })
}

fn shift(op: fn(i32, u32) -> i32) -> LibFn {
    Box::new(move |_lua, args| {
        let x = bit_arg(&args, 1)?;
        let n = bit_arg(&args, 2)? as u32 & 31;
        Ok(MultiValue::from_vec(vec![int(op(x, n))]))
    })
}

fn unary(op: fn(i32) -> i32) -> LibFn {
    Box::new(move |_lua, args| {
        let x = bit_arg(&args, 1)?;
        Ok(MultiValue::from_vec(vec![int(op(x))]))
    })
}

fn tohex(lua: &Lua, args: MultiValue) -> LibResult<MultiValue> {
    let x = bit_arg(&args, 1)? as u32;
    let mut digits = match args.get(1) {
        None | Some(Value::Nil) => 8,
        Some(_) => bit_arg(&args, 2)?,
    };
    let upper = digits < 0;
    if upper {
        digits = digits.wrapping_neg();
    }
    let digits = digits.clamp(0, 8) as usize;
    let text = if upper {
        format!("{x:08X}")
    } else {
        format!("{x:08x}")
    };
    let s = lua
        .create_string(&text[8 - digits..])
        .map_err(|e| e.to_string())?;
    Ok(MultiValue::from_vec(vec![Value::String(s)]))
}

/// The library's functions, by name.
pub fn functions() -> Vec<(&'static str, LibFn)> {
    vec![
        ("tobit", unary(|x| x)),
        ("bnot", unary(|x| !x)),
        ("bswap", unary(i32::swap_bytes)),
        ("band", fold(|a, b| a & b)),
        ("bor", fold(|a, b| a | b)),
        ("bxor", fold(|a, b| a ^ b)),
        ("lshift", shift(|x, n| ((x as u32) << n) as i32)),
        ("rshift", shift(|x, n| ((x as u32) >> n) as i32)),
        ("arshift", shift(|x, n| x >> n)),
        ("rol", shift(|x, n| (x as u32).rotate_left(n) as i32)),
        ("ror", shift(|x, n| (x as u32).rotate_right(n) as i32)),
        ("tohex", Box::new(tohex)),
    ]
}

/// Fills `table` with the library (used by the VM builder).
pub fn install(lua: &Lua, table: &Table) -> mlua::Result<()> {
    crate::vm::install_functions(lua, table, functions())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_wrap_modulo_two_to_the_32() {
        assert_eq!(normalize(4_294_967_301.0), 5);
        assert_eq!(normalize(-1.0), -1);
        assert_eq!(normalize(2_147_483_648.0), i32::MIN);
        assert_eq!(normalize(1.5), 2);
    }
}
