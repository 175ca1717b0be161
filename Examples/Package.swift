// swift-tools-version: 6.1
// Programs a new user of swift-urcu would write, in a package of their own
// that depends on the library by path, as an application does. `make
// examples` (part of `make test`) builds them in release and runs each
// briefly, then runs the config service under ThreadSanitizer and under
// AddressSanitizer.
import PackageDescription

// Under ThreadSanitizer, the library's trait ThreadSanitizerAnnotations
// tells TSan the ordering liburcu provides; `make examples` sets
// URCU_EXAMPLES_TSAN for that run. An application does the same for its
// own TSan runs.
let urcuTraits: Set<Package.Dependency.Trait> =
    Context.environment["URCU_EXAMPLES_TSAN"] == nil ? [.defaults] : [.defaults, "ThreadSanitizerAnnotations"]

let package = Package(
    name: "swift-urcu-examples",
    dependencies: [
        .package(name: "swift-urcu", path: "..", traits: urcuTraits),
    ],
    targets: [
        // Hot reload of a configuration under readers on threads and tasks.
        .executableTarget(
            name: "ConfigService",
            dependencies: [.product(name: "URCU", package: "swift-urcu")]),
        // Connections governed by PercpuRef, freed through the double bounce.
        .executableTarget(
            name: "ConnectionTable",
            dependencies: [
                .product(name: "URCU", package: "swift-urcu"),
                .product(name: "PercpuRef", package: "swift-urcu"),
            ]),
        // The read side from another package, against C in the same run.
        .target(name: "CReadLoop", linkerSettings: [.linkedLibrary("urcu-memb")]),
        .executableTarget(
            name: "ReadBench",
            dependencies: ["CReadLoop", .product(name: "URCU", package: "swift-urcu")]),
    ],
    swiftLanguageModes: [.v6]
)
