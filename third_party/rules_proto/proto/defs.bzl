"""Offline stand-in for rules_proto: forwards to the native rules of Bazel 4.2.3."""

def proto_library(**kwargs):
    native.proto_library(**kwargs)

def proto_lang_toolchain(**kwargs):
    native.proto_lang_toolchain(**kwargs)
