"""Parsing of the encryption names and durability specs, and their error messages."""
import pytest
from cloudstrype.errors import BadRequest
from cloudstrype.pipeline.schemes import (
    AES256_GCM,
    AES256_MD5,
    NONE,
    Durability,
    SchemeError,
    parse_durability,
    parse_encryption,
)


@pytest.mark.parametrize("text, expected", [
    ("aes256-gcm", AES256_GCM),
    ("  AES256-GCM\t", AES256_GCM),
    ("aes256-md5", AES256_MD5),
    ("Aes256-Md5 ", AES256_MD5),
    ("none", NONE),
    (" NONE ", NONE),
    (None, AES256_GCM),
    ("", AES256_GCM),
    ("   ", AES256_GCM),
])
def test_encryption_names(text, expected):
    assert parse_encryption(text) is expected
    assert str(parse_encryption(text)) == expected.name


def test_encryption_flags():
    assert AES256_GCM.encrypted and AES256_GCM.checksum is None
    assert AES256_MD5.encrypted and AES256_MD5.checksum == "md5"
    assert not NONE.encrypted and NONE.checksum is None


@pytest.mark.parametrize("bogus", ["aes128-gcm", "aes256", "rot13", "aes256-gcm(2)", "gcm"])
def test_unknown_encryption_names_the_choices(bogus):
    with pytest.raises(SchemeError) as info:
        parse_encryption(bogus)
    message = str(info.value)
    assert repr(bogus) in message
    for name in ("aes256-gcm", "aes256-md5", "none"):
        assert name in message


def test_encryption_must_be_a_string():
    with pytest.raises(SchemeError, match="must be a string"):
        parse_encryption(256)


@pytest.mark.parametrize("text, canonical, total, needed, tolerates", [
    ("raid1(1)", "raid1(1)", 1, 1, 0),
    ("raid1(3)", "raid1(3)", 3, 1, 2),
    (" RAID1 ( 16 ) ", "raid1(16)", 16, 1, 15),
    ("rs(4,2)", "rs(4,2)", 6, 4, 2),
    ("RS( 4 , 2 )", "rs(4,2)", 6, 4, 2),
    ("\trs(3,\n2)\n", "rs(3,2)", 5, 3, 2),
    ("rs(10,4)", "rs(10,4)", 14, 10, 4),
    ("rs(1,1)", "rs(1,1)", 2, 1, 1),
    ("rs(31,1)", "rs(31,1)", 32, 31, 1),
    ("rs(1,31)", "rs(1,31)", 32, 1, 31),
    ("rs(04,02)", "rs(4,2)", 6, 4, 2),
])
def test_durability_forms(text, canonical, total, needed, tolerates):
    durability = parse_durability(text)
    assert str(durability) == canonical
    assert durability.total_shares == total
    assert durability.needed == needed
    assert durability.tolerates == tolerates
    assert parse_durability(canonical) == durability


def test_durability_constructors_and_data_shares():
    assert Durability.raid1(3) == parse_durability("raid1(3)")
    assert Durability.rs(4, 2) == parse_durability("rs(4,2)")
    rs = Durability.rs(4, 2)
    assert [rs.is_data_share(i) for i in range(6)] == [True] * 4 + [False] * 2
    assert all(Durability.raid1(3).is_data_share(i) for i in range(3))


@pytest.mark.parametrize("text, fragments", [
    ("rs(0,1)", ["rs(0,1)", "K", "at least 1"]),
    ("rs(4,0)", ["rs(4,0)", "M", "at least 1", "raid1(N)"]),
    ("rs(20,20)", ["rs(20,20)", "40", "at most 32"]),
    ("rs(31,2)", ["33", "at most 32"]),
    ("raid1(0)", ["raid1(0)", "between 1 and 16"]),
    ("raid1(17)", ["raid1(17)", "between 1 and 16"]),
    ("raid5(3)", ["unknown durability", "'raid5(3)'", "raid1(N)", "rs(K,M)"]),
    ("mirror", ["unknown durability", "raid1(N)"]),
    ("raid1", ["parentheses", "raid1(3)"]),
    ("rs", ["parentheses", "rs(4,2)"]),
    ("rs(4)", ["two numbers", "rs(4,2)"]),
    ("rs(4,2,1)", ["two numbers"]),
    ("raid1(1,2)", ["one number"]),
    ("rs(a,2)", ["'a'", "whole number"]),
    ("rs(-1,2)", ["'-1'", "whole number"]),
    ("rs(4.0,2)", ["'4.0'", "whole number"]),
    ("raid1()", ["''", "whole number"]),
    ("raid1(99999999999999999999)", ["'99999999999999999999'", "too large", "1 <= N <= 16"]),
    ("rs(4,2)x", ["cannot read durability"]),
    ("", ["empty"]),
    ("  ", ["empty"]),
    ("rs(" + "1," * 40 + "1)", ["not a scheme"]),
])
def test_bad_durability_messages(text, fragments):
    with pytest.raises(SchemeError) as info:
        parse_durability(text)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize("value", [None, 3, ["rs", 4, 2]])
def test_durability_must_be_a_string(value):
    with pytest.raises(SchemeError, match="raid1\\(N\\)"):
        parse_durability(value)


def test_scheme_error_is_a_value_error_and_a_400():
    with pytest.raises(ValueError):
        parse_durability("rs(0,1)")
    error = SchemeError("x")
    assert isinstance(error, BadRequest)
    assert error.status == 400 and error.code == "bad_scheme"
    assert error.body() == {"error": {"code": "bad_scheme", "message": "x"}}


def test_direct_construction_validates():
    with pytest.raises(SchemeError, match="between 1 and 16"):
        Durability.raid1(0)
    with pytest.raises(SchemeError, match="at most 32"):
        Durability.rs(16, 17)
    with pytest.raises(SchemeError, match="unknown durability kind"):
        Durability("raid6", 4, 2)
