// A blocking wait written in async code: it would hold a thread of the
// cooperative pool. The blocking forms are `noasync` and each has an
// async twin, which async code resolves to: written without `await`, the
// call does not compile.
// expect-error: expression is 'async' but is not marked with 'await'
import URCU

func update() async {
    MembarrierRCU.synchronize()
}
