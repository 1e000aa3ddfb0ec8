//! Prints how many table opcodes the interpreter implements, per architecture and class.
fn main() {
    for (arch, data) in [
        ("gfx11", include_str!("../data/ops_gfx11.txt")),
        ("gfx12", include_str!("../data/ops_gfx12.txt")),
    ] {
        let mut per: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
        for line in data.lines().filter(|l| !l.starts_with('#')) {
            let mut it = line.split(' ');
            let (Some(cls), _, Some(mn)) = (it.next(), it.next(), it.next()) else { continue };
            let e = per.entry(cls).or_default();
            e.1 += 1;
            if egpu_rdna::interp::implemented(mn) {
                e.0 += 1;
            }
        }
        let (i, t) = per.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        println!("{arch}: {i} of {t} opcodes implemented; by class (implemented/total): {per:?}");
    }
}
