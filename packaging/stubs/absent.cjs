// Stands in for optional native helpers (ws's bufferutil and utf-8-validate, dbus-next's usocket) that a single executable cannot load; their callers catch this and use plain JS.
throw new Error('optional native module not bundled');
