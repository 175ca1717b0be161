// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "swift-urcu",
    products: [
        .library(name: "URCU", targets: ["URCU"]),
    ],
    targets: [
        // liburcu itself, located by pkg-config.
        .systemLibrary(
            name: "CLibURCU",
            pkgConfig: "liburcu-memb",
            providers: [.apt(["liburcu-dev"])]
        ),
        // The thin C shim: liburcu's static-inline fast paths, visible to Swift.
        .target(
            name: "CURCU",
            dependencies: ["CLibURCU"],
            linkerSettings: [.linkedLibrary("urcu-qsbr"), .linkedLibrary("urcu-mb"), .linkedLibrary("urcu-bp")]
        ),
        .target(name: "URCU", dependencies: ["CURCU"]),
        .testTarget(name: "URCUTests", dependencies: ["URCU"]),

        // Benchmarks: the C reference loops and the runner (`make bench`).
        .target(name: "CBaseline", dependencies: ["CLibURCU"], path: "Benchmarks/CBaseline"),
        .executableTarget(
            name: "urcu-bench", dependencies: ["URCU", "CBaseline"], path: "Benchmarks/URCUBench"),
    ],
    swiftLanguageModes: [.v6]
)
