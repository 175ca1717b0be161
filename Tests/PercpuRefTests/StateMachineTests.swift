import PercpuRef
import PropertyBased
import Synchronization
import Testing
import URCU
import URCUTesting

/// The grace-period domain of these tests.
typealias Manual = ManualRCU<StateMachineTests>

/// The kernel's percpu_ref semantics as a plain model: a logical count, the
/// mode, the dead flag and the switch in flight. Random operation sequences
/// run on the model and on a `PercpuRef<Manual>` side by side, and every
/// observable answer must agree after every step.
struct RefModel {
    var count = 1
    var dead = false
    var atomic: Bool
    var forceAtomic: Bool
    var allowReinit: Bool
    var switchInFlight = false
    var releases = 0

    init(options: PercpuRef<Manual>.Options) {
        atomic = !options.isDisjoint(with: [.startAtomic, .startDead])
        forceAtomic = options.contains(.startAtomic)
        allowReinit = atomic || options.contains(.allowReinit)
        if options.contains(.startDead) {
            dead = true
            count = 0
        }
    }

    var isZero: Bool { atomic && !switchInFlight && count == 0 }
    var canGainReference: Bool { !atomic || switchInFlight || count > 0 }

    /// A put that leaves the shared count at zero releases, in atomic mode
    /// only, and never while a switch holds its own reference.
    mutating func put() {
        count -= 1
        if isZero { releases += 1 }
    }

    mutating func settle() {
        if forceAtomic || dead {
            if !atomic {
                atomic = true
                switchInFlight = true
            }
        } else if atomic && !switchInFlight {
            atomic = false
        }
    }

    mutating func completeGracePeriod() {
        guard switchInFlight else { return }
        switchInFlight = false
        settle()
        // The switch drops its own reference last.
        if isZero { releases += 1 }
    }
}

enum RefOperation: Int, CaseIterable {
    case get, tryGet, tryGetLive, put, kill, completeGracePeriod, switchToAtomic, switchToPercpu,
         resurrect, reinit
}

@Suite("PercpuRef state machine", .serialized)
struct StateMachineTests {
    /// Applies `operation` to both sides if it is legal in the model's
    /// state; returns a description of any disagreement.
    static func step(
        _ operation: RefOperation, model: inout RefModel, ref: PercpuRef<Manual>,
        releases: Counter, held: inout Int
    ) -> String? {
        switch operation {
        case .get:
            guard held > 0 || (!model.dead && model.canGainReference) else { return nil }
            ref.get()
            model.count += 1
            held += 1
        case .tryGet:
            let expected = model.canGainReference
            if ref.tryGet() != expected { return "tryGet returned \(!expected)" }
            if expected { model.count += 1; held += 1 }
        case .tryGetLive:
            let expected = !model.dead && model.canGainReference
            if ref.tryGetLive() != expected { return "tryGetLive returned \(!expected)" }
            if expected { model.count += 1; held += 1 }
        case .put:
            guard held > 0 else { return nil }
            ref.put()
            model.put()
            held -= 1
        case .kill:
            guard !model.dead, held > 0 else { return nil }
            ref.kill()
            model.dead = true
            model.settle()
            model.put()
            held -= 1
        case .completeGracePeriod:
            Manual.completeGracePeriod()
            model.completeGracePeriod()
        case .switchToAtomic:
            ref.switchToAtomic()
            model.forceAtomic = true
            model.settle()
        case .switchToPercpu:
            guard model.allowReinit else { return nil }
            ref.switchToPercpu()
            model.forceAtomic = false
            model.settle()
        case .resurrect:
            guard model.dead, model.allowReinit || model.forceAtomic else { return nil }
            ref.resurrect()
            model.dead = false
            model.count += 1
            held += 1
            model.settle()
        case .reinit:
            guard model.dead, model.isZero, model.allowReinit || model.forceAtomic else { return nil }
            ref.reinit()
            model.dead = false
            model.count = 1
            held = 1
            model.settle()
        }
        if ref.isZero != model.isZero { return "isZero is \(ref.isZero), model says \(model.isZero)" }
        if ref.isDying != model.dead { return "isDying is \(ref.isDying), model says \(model.dead)" }
        if ref.isPercpu != !model.atomic { return "isPercpu is \(ref.isPercpu), model says \(!model.atomic)" }
        if releases.value != model.releases {
            return "released \(releases.value) times, model says \(model.releases)"
        }
        return nil
    }

    @Test("random operation sequences agree with the model")
    func randomSequences() async {
        let options = Gen.int(in: 0...3).map { choice -> PercpuRef<Manual>.Options in
            [[], [.allowReinit], [.startAtomic], [.startDead]][choice]
        }
        let operations = Gen.int(in: 0..<RefOperation.allCases.count)
            .map { RefOperation(rawValue: $0)! }.array(of: 1...60)
        await propertyCheck(count: 400, input: options, operations) { options, operations in
            Manual.barrier()
            let releases = Counter()
            let ref = PercpuRef<Manual>(options: options) { releases.increment() }
            var model = RefModel(options: options)
            var held = model.count
            for (index, operation) in operations.enumerated() {
                if let mismatch = Self.step(operation, model: &model, ref: ref, releases: releases, held: &held) {
                    Issue.record("after \(operations[...index]): \(mismatch)")
                    break
                }
            }
            Manual.barrier()
        }
    }

    @Test("release runs exactly once per kill/reinit cycle")
    func releaseOncePerCycle() {
        let releases = Counter()
        let ref = PercpuRef<Manual>(options: .allowReinit) { releases.increment() }
        for cycle in 1...5 {
            ref.get()
            ref.kill()
            #expect(ref.isDying)
            #expect(!ref.tryGetLive())
            #expect(ref.tryGet(), "a referenced dying ref still hands out references")
            ref.put()
            #expect(releases.value == cycle - 1, "released before the grace period")
            Manual.completeGracePeriod()
            #expect(releases.value == cycle - 1, "released with a reference held")
            ref.put()
            #expect(releases.value == cycle)
            #expect(ref.isZero)
            ref.reinit()
            #expect(ref.isPercpu)
            #expect(!ref.isDying)
        }
    }

    @Test("kill(confirm:) confirms only after the grace period")
    func confirmAfterGracePeriod() {
        let confirmed = Latch()
        let ref = PercpuRef<Manual> {}
        ref.get()
        ref.kill { confirmed.open() }
        #expect(!confirmed.isOpen)
        #expect(!ref.tryGetLive(), "tryGetLive must fail as soon as the ref is dead")
        Manual.completeGracePeriod()
        #expect(confirmed.isOpen)
        ref.put()
        #expect(ref.isZero)
    }

    @Test("requests made during a switch take effect when it completes")
    func requestsDuringSwitch() {
        let ref = PercpuRef<Manual>(options: .allowReinit) {}
        let confirmations = Counter()
        ref.switchToAtomic { confirmations.increment() }
        ref.switchToAtomic { confirmations.increment() }
        ref.switchToPercpu()
        #expect(!ref.isPercpu, "still switching")
        Manual.completeGracePeriod()
        #expect(confirmations.value == 2)
        #expect(ref.isPercpu, "the pending switch back to percpu took effect")
        ref.switchToAtomic()
        Manual.completeGracePeriod()
        #expect(!ref.isPercpu)
        #expect(!ref.isZero)
    }
}
