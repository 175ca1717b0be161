// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "swift-urcu",
    products: [
        .library(name: "URCU", targets: ["URCU"]),
        .library(name: "PercpuRef", targets: ["PercpuRef"]),
        .library(name: "ContextTable", targets: ["ContextTable"]),
        .library(name: "MemoryRegions", targets: ["MemoryRegions"]),
        .library(name: "URCUTesting", targets: ["URCUTesting"]),
    ],
    traits: [
        .trait(
            name: "QSBRReadSideChecks",
            description: """
                Diagnose QSBR misuse that only the read side can see (a section on an unregistered or \
                offline thread; synchronize, barrier, quiescentState or going offline inside a section), \
                in every build. On by default; turning it off leaves liburcu's bare QSBR read side, and \
                lets the first 256 PercpuRef<QuiescentStateRCU> count from the thread pointer (register \
                QSBR readers through QuiescentStateRCU then).
                """),
        .trait(
            name: "InlineFastPaths",
            description: """
                Compile liburcu's read side (read lock and unlock, QSBR's quiescent states) inline into \
                callers, as C code gets with _LGPL_SOURCE: it costs what C's read side costs, and places \
                LGPL-2.1 code in your binary. On by default; turning it off calls liburcu's shared \
                libraries instead (see "License" in README.md).
                """),
        .trait(
            name: "ThreadSanitizerAnnotations",
            description: """
                For runs under --sanitize=thread: tell ThreadSanitizer the ordering liburcu provides \
                (call_rcu to its callback, a read section's end to the grace period that waited for it) \
                and use locks it can see, so that it reports no race that is the library's doing. \
                Harmless without the sanitizer (a branch per annotation).
                """),
        .default(enabledTraits: ["QSBRReadSideChecks", "InlineFastPaths"]),
    ],
    dependencies: [
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
    ],
    targets: [
        // liburcu itself, located by pkg-config.
        .systemLibrary(
            name: "CLibURCU",
            pkgConfig: "liburcu-memb",
            providers: [.apt(["liburcu-dev"]), .brew(["userspace-rcu"])]
        ),
        // The thin C shim: liburcu's static-inline fast paths, visible to Swift.
        .target(
            name: "CURCU",
            dependencies: ["CLibURCU"],
            linkerSettings: [.linkedLibrary("urcu-qsbr"), .linkedLibrary("urcu-mb"), .linkedLibrary("urcu-bp")]
        ),
        .target(
            name: "URCU", dependencies: ["CURCU"],
            // RCUReference: a ~Escapable type whose lifetime is the read
            // section's. Dependents need no flag.
            swiftSettings: [.enableExperimentalFeature("Lifetimes")]),
        .target(name: "PercpuRef", dependencies: ["URCU", "CURCU"]),
        // The seeds' fs/aio context lifecycle over PercpuRef and RCU.
        .target(name: "ContextTable", dependencies: ["PercpuRef", "URCU", "CURCU"]),
        // The RDMAVT memory-region lifecycle (the 2018 audit's third fix).
        .target(name: "MemoryRegions", dependencies: ["PercpuRef", "URCU", "CURCU"]),
        // A flavor whose grace periods the test controls.
        .target(name: "URCUTesting", dependencies: ["URCU", "CURCU"]),
        // The torture run (`make torture`): its scenarios are a library so
        // the tests can run them briefly.
        .target(name: "URCUTorture", dependencies: ["URCU", "ContextTable", "MemoryRegions", "URCUTesting", "CURCU"]),
        .executableTarget(name: "urcu-torture", dependencies: ["URCU", "URCUTorture"]),
        // Helpers shared by the test targets.
        .target(name: "TestSupport", dependencies: ["URCU", "URCUTesting", "ContextTable", "MemoryRegions"], path: "Tests/TestSupport"),
        .testTarget(
            name: "URCUTests",
            dependencies: ["URCU", "URCUTorture", "ContextTable", "PercpuRef", "URCUTesting", "TestSupport"]),
        .testTarget(
            name: "ContextTableTests",
            dependencies: [
                "ContextTable", "URCU", "URCUTesting", "TestSupport",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]),
        // The implementation checked against Spec/: model-based tests along
        // TLC's state graph, and trace validation of real runs by TLC.
        .testTarget(
            name: "ConformanceTests",
            dependencies: ["ContextTable", "MemoryRegions", "PercpuRef", "URCU", "URCUTesting", "TestSupport"]),
        .testTarget(
            name: "MemoryRegionTests",
            dependencies: ["MemoryRegions", "PercpuRef", "URCU", "URCUTesting", "TestSupport"]),
        .testTarget(
            name: "PercpuRefTests",
            dependencies: [
                "PercpuRef", "URCU", "URCUTesting", "TestSupport",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]),

        // Benchmarks: the C reference loops and the runner (`make bench`).
        .target(name: "CBaseline", dependencies: ["CLibURCU"], path: "Benchmarks/CBaseline"),
        .executableTarget(
            name: "urcu-bench", dependencies: ["URCU", "PercpuRef", "ContextTable", "URCUTesting", "CBaseline"], path: "Benchmarks/URCUBench"),
    ],
    swiftLanguageModes: [.v6]
)
