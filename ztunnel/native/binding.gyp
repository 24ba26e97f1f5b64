{
  "targets": [
    {
      "target_name": "ambit_native",
      "sources": ["ambit_native.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
      "cflags_c": ["-std=gnu11"]
    }
  ]
}
