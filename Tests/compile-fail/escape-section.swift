// The read-section token cannot outlive its section: returning it is a
// consume of a borrowed value.
// expect-error: 'section' is borrowed and cannot be consumed
import URCU

func escape() {
    let kept = MembarrierRCU.read { section in section }
    _ = kept
}
